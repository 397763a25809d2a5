package launcher

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/atomicfile"
	"github.com/ocnix/ocnix/internal/testkit"
)

// The instance is hostile and owns stateDir. These tests forge, from inside
// the sandbox (`run -- sh -c …`, exactly what an agent can do), everything
// the launcher used to trust there, and in its private directory, and check
// that run and setup do the same as without the forgery. Each fails on
// ccade3b, where the bookkeeping lived in stateDir/.ocnix and opencode.json
// in stateDir/config/opencode.

// inside runs a shell command in the instance's sandbox and returns its
// stdout (the launcher's log, which quotes the command, goes to stderr).
func (in *testInstance) inside(script string) string {
	in.t.Helper()
	cmd := exec.Command(launcherBin(in.t), "run", "--config", in.specPath, "--", "/bin/sh", "-c", script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	in.t.Logf("inside the sandbox: %s\n%s", script, errb.String())
	return out.String()
}

func TestForgedSetupRecordDoesNotStartTheServer(t *testing.T) {
	in := binInstance(t)
	in.set("preInitScript", in.script("pre", "exit 3"))
	if code, out := in.launcher("setup", "--config", in.specPath); code != ExitInitScript {
		t.Fatalf("setup with a failing script: exit %d, want %d:\n%s", code, ExitInitScript, out)
	}
	ok := `{"result":"ok","time":"2026-01-01T00:00:00Z"}`
	out := in.inside(`mkdir -p "$HOME/.ocnix"
printf '%s\n' '` + ok + `' > "$HOME/.ocnix/last-setup.json" && echo forged-old
printf '%s\n' '` + ok + `' > "` + privateDirFor(in.name) + `/last-setup.json" && echo forged-private
mv "` + privateDirFor(in.name) + `" "$HOME/moved" && echo moved-private
true`)
	if strings.Contains(out, "forged-private") || strings.Contains(out, "moved-private") {
		t.Errorf("the instance wrote its private directory:\n%s", out)
	}
	code, out := in.launcher("run", "--config", in.specPath)
	if code != ExitInitScript || !strings.Contains(out, "the last setup failed") {
		t.Errorf("run after a failed setup and a forged record: exit %d, want %d refusing:\n%s", code, ExitInitScript, out)
	}
	// The positive twin: a real successful setup lets the server start.
	in.set("preInitScript", in.script("pre", "true"))
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	if code, out := in.launcher("run", "--config", in.specPath); code != 0 {
		t.Errorf("run after a good setup: exit %d:\n%s", code, out)
	}
}

func TestForgedStampDoesNotSkipAChangedScript(t *testing.T) {
	in := binInstance(t)
	counter := filepath.Join(in.dir, "counter")
	pre := in.script("pre", "echo v1 >> "+counter)
	in.set("preInitScript", pre)
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	// The operator fixes the script; the instance, which would rather it did
	// not run, records the new content as already run.
	in.script("pre", "echo v2 >> "+counter)
	f, err := os.Open(pre)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := scriptDigest("pre", pre, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := in.inside(`mkdir -p "$HOME/.ocnix"
echo ` + digest + ` > "$HOME/.ocnix/init-pre.sha256"
echo ` + digest + ` > "` + privateDirFor(in.name) + `/init-pre.sha256" && echo forged-private
true`)
	if strings.Contains(out, "forged-private") {
		t.Errorf("the instance wrote a stamp into its private directory:\n%s", out)
	}
	code, out := in.launcher("setup", "--config", in.specPath)
	if code != 0 {
		t.Fatalf("setup after editing the script: exit %d:\n%s", code, out)
	}
	if c := in.read(counter); testkit.CountLines(c, "v2") != 1 {
		t.Errorf("a forged stamp made setup skip the changed script; counter %q; setup:\n%s", c, out)
	}
	// The twin: an honest stamp still skips an unchanged script.
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 || !strings.Contains(out, "skipping init script") {
		t.Errorf("setup of an unchanged script: exit %d, want it skipped:\n%s", code, out)
	}
}

func TestInstanceCannotEditItsOpencodeJSON(t *testing.T) {
	in := binInstance(t)
	in.set("opencodeConfig", map[string]any{"permission": map[string]any{"bash": "deny"}})
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	want := testConfigJSON(t, in.specPath)
	out := in.inside(`echo '{"permission":{"bash":"allow"}}' > "$OPENCODE_CONFIG" && echo edited
rm -f "$OPENCODE_CONFIG" && echo removed
mkdir -p "$XDG_CONFIG_HOME/opencode" && echo '{"permission":{"bash":"allow"}}' > "$XDG_CONFIG_HOME/opencode/opencode.json" && echo wrote-global
true`)
	if strings.Contains(out, "edited") || strings.Contains(out, "removed") {
		t.Errorf("the instance changed $OPENCODE_CONFIG:\n%s", out)
	}
	if !strings.Contains(out, "wrote-global") {
		t.Errorf("opencode's own global config dir must stay writable for it:\n%s", out)
	}
	// What the server is pointed at, read from inside the sandbox: the twin
	// that proves the file is readable there.
	if got := in.inside(`cat "$OPENCODE_CONFIG"`); got != string(want) {
		t.Errorf("$OPENCODE_CONFIG inside the sandbox holds %q, want the composed %q", got, want)
	}
	if code, out := in.launcher("run", "--config", in.specPath); code != 0 {
		t.Errorf("run: exit %d:\n%s", code, out)
	}
}

func TestRunRefusesAnOpencodeJSONFromAnOlderSpec(t *testing.T) {
	in := binInstance(t)
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	in.set("opencodeConfig", map[string]any{"share": "manual"})
	if code, out := in.launcher("run", "--config", in.specPath); code != ExitInitScript || !strings.Contains(out, "does not match the spec") {
		t.Errorf("run with a spec changed since setup: exit %d, want %d:\n%s", code, ExitInitScript, out)
	}
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	if code, out := in.launcher("run", "--config", in.specPath); code != 0 {
		t.Errorf("run after setup: exit %d:\n%s", code, out)
	}
}

// TestSetupMigratesTheOldLayoutWithoutTrustingIt: an installation of an
// older release has its bookkeeping in stateDir, possibly forged.
func TestSetupMigratesTheOldLayoutWithoutTrustingIt(t *testing.T) {
	in := newTestInstance(t)
	counter := filepath.Join(in.dir, "counter")
	pre := counterScript(in, "pre", "pre")
	in.set("preInitScript", pre)
	f, _ := os.Open(pre)
	digest, _ := scriptDigest("pre", pre, f)
	f.Close()
	u := lookupTestUser(t, in.user)
	old := map[string]string{
		filepath.Join(in.stateDir, ".ocnix", "init-pre.sha256"):                           digest + "\n",
		filepath.Join(in.stateDir, ".ocnix", lastSetupFile):                               `{"result":"ok"}` + "\n",
		filepath.Join(in.stateDir, "config", "opencode", "opencode.json"):                 `{"permission":"allow"}`,
		filepath.Join(in.stateDir, ".ocnix", "."+lastSetupFile+atomicfile.TmpMarker+"ab"): "",
	}
	for p, content := range old {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{in.stateDir, filepath.Join(in.stateDir, ".ocnix"), filepath.Join(in.stateDir, "config"), filepath.Join(in.stateDir, "config", "opencode")} {
		os.Chown(d, int(u.uid), int(u.gid))
	}
	in.mustSetup(false)
	if c := in.read(counter); testkit.CountLines(c, "pre") != 1 {
		t.Errorf("an old stamp in stateDir made setup skip the script; counter %q", c)
	}
	for p := range old {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the migration: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(in.stateDir, ".ocnix")); !os.IsNotExist(err) {
		t.Errorf("the old .ocnix dir survived the migration: %v", err)
	}
	// After the migration the global config dir is opencode's own again: a
	// file the instance puts there later is left alone.
	mine := filepath.Join(in.stateDir, "config", "opencode", "opencode.json")
	os.WriteFile(mine, []byte("{}"), 0o600)
	in.mustSetup(false)
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("a later setup removed the instance's own global config: %v", err)
	}
}
