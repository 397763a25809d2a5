package launcher

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// These tests drive the built opencode-launcher, so init scripts go through
// the real `run --config F -- SCRIPT`: netns, privilege drop, Landlock and
// seccomp. They complement setup_e2e_test.go, which tests setup's own logic
// with scripts run as the instance user but unsandboxed.

// launcher runs the built binary and returns its exit code and output.
func (in *testInstance) launcher(args ...string) (int, string) {
	in.t.Helper()
	bin := launcherBin(in.t)
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		in.t.Fatalf("%s %v: %v", bin, args, err)
	}
	return 0, out.String()
}

// binInstance is a testInstance whose setups take the production lock in
// /run/opencode; its lock file is removed afterwards.
func binInstance(t *testing.T) *testInstance {
	t.Helper()
	in := newTestInstance(t) // skips without root
	t.Cleanup(func() { os.Remove(filepath.Join(defaultLockDir, in.name+".lock")) })
	return in
}

func TestSetupBinaryRefusesNonRoot(t *testing.T) {
	in := binInstance(t)
	cmd := exec.Command(launcherBin(t), "setup", "--config", in.specPath)
	u := lookupTestUser(t, in.user)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != ExitPermission || !strings.Contains(string(out), "setup must run as root") {
		t.Errorf("setup as %s = %v, %s; want exit %d saying root is needed", in.user, err, out, ExitPermission)
	}
}

func TestSetupBinaryInitScriptRunsSandboxedWithSecrets(t *testing.T) {
	in := binInstance(t)
	// DAC would allow this write: the instance user owns the directory.
	// Only the sandbox can deny it.
	outside := filepath.Join(in.base, "outside")
	in.mkdir(outside, true)
	marker := "ocnix-marker-" + testkit.RandHex(8)
	envFile := filepath.Join(in.base, "secrets.env")
	if err := os.WriteFile(envFile, []byte("API_TOKEN="+marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in.spec["environmentFile"] = envFile
	in.set("preInitScript", in.script("pre", `
printf '%s' "$API_TOKEN" > `+in.dir+`/seen
printf '%s %s' "$HOME" "$(pwd)" > `+in.dir+`/where
env > `+in.dir+`/env
if echo x > `+outside+`/escaped 2>/dev/null; then echo "wrote outside the sandbox"; exit 1; fi
echo denied > `+in.dir+`/result`))

	code, out := in.launcher("setup", "--config", in.specPath)
	if code != 0 {
		t.Fatalf("setup exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
		t.Errorf("init script wrote outside its allowed paths")
	}
	if got := in.read(filepath.Join(in.dir, "result")); got != "denied\n" {
		t.Errorf("script result %q, want denied", got)
	}
	if got := in.read(filepath.Join(in.dir, "seen")); got != marker {
		t.Errorf("script saw API_TOKEN=%q, want the environmentFile value", got)
	}
	if got, want := in.read(filepath.Join(in.dir, "where")), in.stateDir+" "+in.dir; got != want {
		t.Errorf("script HOME and cwd = %q, want %q", got, want)
	}
	_, explain := in.launcher("explain", "--config", in.specPath)
	_, explainJSON := in.launcher("explain", "--json", "--config", in.specPath)
	for what, text := range map[string]string{"setup output": out, "explain": explain, "explain --json": explainJSON} {
		if strings.Contains(text, marker) {
			t.Errorf("%s contains the secret:\n%s", what, text)
		}
	}
	if hits := grepTree(t, in.stateDir, marker); len(hits) > 0 {
		t.Errorf("secret found in state dir files: %v", hits)
	}

	// Converged: a second setup skips the script.
	code, out = in.launcher("setup", "--config", in.specPath)
	if code != 0 || !strings.Contains(out, "skipping init script") {
		t.Errorf("second setup exit %d, want 0 and the script skipped:\n%s", code, out)
	}
}

func TestSetupBinaryFailingScriptExitsInitScript(t *testing.T) {
	in := binInstance(t)
	in.set("postInitScript", in.script("post", "echo 'the tail line'\nexit 4"))
	code, out := in.launcher("setup", "--config", in.specPath)
	if code != ExitInitScript || !strings.Contains(out, "exited with status 4") || !strings.Contains(out, "| the tail line") {
		t.Errorf("setup exit %d, want %d with the status and the output tail:\n%s", code, ExitInitScript, out)
	}
	in.set("postInitScript", in.script("post", "true"))
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Errorf("setup after fixing the script: exit %d:\n%s", code, out)
	}
}

type testUser struct{ uid, gid uint32 }

func lookupTestUser(t *testing.T, name string) testUser {
	t.Helper()
	s := &Spec{User: name, Group: name}
	id, err := lookupIdentity(s)
	if err != nil {
		t.Fatal(err)
	}
	return testUser{uid: uint32(id.uid), gid: uint32(id.gid)}
}

func TestSetupBinaryInitScriptRunsInTheInstanceNetns(t *testing.T) {
	in := binInstance(t)
	netFile := filepath.Join(in.dir, "netns")
	in.spec["networkIsolation"] = map[string]any{"enable": true}
	in.set("preInitScript", in.script("pre", "readlink /proc/self/ns/net > "+netFile))
	t.Cleanup(func() {
		if code, out := in.launcher("teardown", "--config", in.specPath); code != 0 {
			t.Errorf("teardown exit %d:\n%s", code, out)
		}
	})
	code, out := in.launcher("setup", "--config", in.specPath)
	if code != 0 {
		t.Fatalf("setup exit %d:\n%s", code, out)
	}
	var st syscall.Stat_t
	nsPath := filepath.Join("/run/netns", "opencode-"+in.name)
	if err := syscall.Stat(nsPath, &st); err != nil {
		t.Fatalf("setup did not create the netns %s: %v", nsPath, err)
	}
	want := "net:[" + strconv.FormatUint(st.Ino, 10) + "]"
	if got := strings.TrimSpace(in.read(netFile)); got != want {
		t.Errorf("init script ran in %q, want the instance netns %s %s", got, nsPath, want)
	}
}

func TestSetupBinaryTimeoutKillsTheSandboxedScript(t *testing.T) {
	in := binInstance(t)
	pidFile := filepath.Join(in.dir, "pid")
	in.spec["initScriptTimeout"] = 1
	in.set("preInitScript", in.script("pre", "echo $$ > "+pidFile+"\nexec sleep 60"))
	code, out := in.launcher("setup", "--config", in.specPath)
	if code != ExitInitScript || !strings.Contains(out, "did not finish within initScriptTimeout (1s)") {
		t.Fatalf("setup exit %d, want %d naming the timeout:\n%s", code, ExitInitScript, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(in.read(pidFile)))
	if err != nil {
		t.Fatalf("script pid: %v", err)
	}
	// The script runs under run's supervisor, in the sandbox; killing the
	// supervisor's process group must take the script down too.
	waitGone(t, pid)
}

func TestSetupBinaryKilledDuringAScriptConverges(t *testing.T) {
	in := binInstance(t)
	counter := filepath.Join(in.dir, "counter")
	in.set("preInitScript", in.script("pre", "echo start >> "+counter+"\nsleep 2\necho done >> "+counter))

	cmd := exec.Command(launcherBin(t), "setup", "--config", in.specPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(in.read(counter), "start") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("script never started:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup after kill -9: exit %d:\n%s", code, out)
	}
	time.Sleep(500 * time.Millisecond) // let a surviving killed script show itself
	c := in.read(counter)
	if count(c, "start") != 2 || count(c, "done") != 1 {
		t.Errorf("want the killed run's start, then one full run (start, done); counter:\n%s", c)
	}
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 || in.read(counter) != c {
		t.Errorf("third setup: exit %d, counter %q (want unchanged):\n%s", code, in.read(counter), out)
	}
}
