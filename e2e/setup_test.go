//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ocnix/ocnix/internal/testkit"
)

// setup's contract as its users see it: `opencode-launcher setup` converges
// the state tree, runs each init script once per content (through the real
// `run -- SCRIPT`: netns, privilege drop, Landlock, seccomp), records its
// result for `status`, preflight and run, and refuses bad input before it
// changes anything.

// The launcher's exit codes (launcher/exit.go); e2e drives the binary only.
const (
	exitNoInput    = 66
	exitPermission = 77
	exitInitScript = 79
	// tailLines is how many lines of a failed script's output the error keeps.
	tailLines = 20
)

// setupInstance is an instance whose stateDir is <base>/state/<name> below a
// root-owned parent, with a root-owned scripts directory, as in production.
func setupInstance(t *testing.T) *instance {
	t.Helper()
	name := "su-" + testkit.RandHex(3)
	in := newInstance(t, name, func(in *instance) {
		in.stateDir = filepath.Join(in.base, "state", name)
		in.spec["stateDir"] = in.stateDir
	})
	in.mkdir(filepath.Join(in.base, "state"), false)
	in.mkdir(filepath.Join(in.base, "scripts"), false)
	// setup and run take the production lock.
	t.Cleanup(func() { os.Remove(filepath.Join("/run/opencode", name+".lock")) })
	return in
}

func (in *instance) mkdir(p string, userOwned bool) {
	in.t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		in.t.Fatal(err)
	}
	if userOwned {
		mustRun(in.t, "chown", in.user+":"+in.user, p)
	}
}

func (in *instance) set(key string, v any) {
	in.spec[key] = v
	in.writeSpec()
}

// script writes an executable shell script (root-owned, 0755) and returns its path.
func (in *instance) script(name, body string) string {
	in.t.Helper()
	return testkit.WriteScript(in.t, filepath.Join(in.base, "scripts", name), body)
}

func (in *instance) read(p string) string {
	in.t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		in.t.Fatal(err)
	}
	return string(b)
}

// runSetup runs `setup` with args and returns its exit code and everything
// it printed.
func (in *instance) runSetup(args ...string) (int, string) {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, errs, code := in.launcher(ctx, "setup", args...)
	return code, out + errs
}

func (in *instance) mustSetup(args ...string) string {
	in.t.Helper()
	code, out := in.runSetup(args...)
	if code != 0 {
		in.t.Fatalf("setup %v: exit %d:\n%s", args, code, out)
	}
	return out
}

// setupFailed is what `status --json` says about the last setup.
func (in *instance) setupFailed() (bool, string) {
	in.t.Helper()
	out, errs, _ := in.launcher(context.Background(), "status", "--json")
	var st struct {
		SetupFailed bool   `json:"setupFailed"`
		SetupDetail string `json:"setupDetail"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		in.t.Fatalf("status --json: %v\nstdout:\n%s\nstderr:\n%s", err, out, errs)
	}
	return st.SetupFailed, st.SetupDetail
}

// explained is the part of `explain --json` that setup's results are checked against.
type explained struct {
	Layout struct {
		StateDir   string `json:"stateDir"`
		Data       string `json:"data"`
		Cache      string `json:"cache"`
		Private    string `json:"private"`
		ConfigFile string `json:"configFile"`
	} `json:"layout"`
	OpencodeConfig any `json:"opencodeConfig"`
}

func (in *instance) explain() explained {
	in.t.Helper()
	out, errs, code := in.launcher(context.Background(), "explain", "--json")
	var e explained
	if err := json.Unmarshal([]byte(out), &e); code != 0 || err != nil {
		in.t.Fatalf("explain --json: exit %d, %v\nstderr:\n%s", code, err, errs)
	}
	return e
}

func lookupUser(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// counterScript appends word to directory/counter, so a test can count runs.
func counterScript(in *instance, name, word string) string {
	return in.script(name, "echo "+word+" >> "+filepath.Join(in.dir, "counter"))
}

// treeEntry is what "identical tree" means: names, types, modes, owners and
// file content (except the last-setup record, which holds a time).
type treeEntry struct {
	Path     string
	Mode     fs.FileMode
	UID, GID uint32
	SHA256   string
}

func walkTree(t *testing.T, root string) []treeEntry {
	t.Helper()
	var out []treeEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		e := treeEntry{Path: rel, Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		if fi.Mode().IsRegular() && d.Name() != "last-setup.json" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.SHA256 = hex.EncodeToString(sum[:])
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grepTree lists files below root that contain needle.
func grepTree(root, needle string) []string {
	var hits []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), needle) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	return hits
}

// mustBeGone waits until pid no longer exists (or is a zombie) and fails the
// test if it is still there after 10 s, killing it so it is not left behind.
func mustBeGone(t *testing.T, what string, pid int) {
	t.Helper()
	if pid == 0 {
		return // already gone when its id was looked up
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+2:]), "Z") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("process %d (%s) outlived its init script", pid, what)
}

func TestSetupTwiceGivesTheSameTreeAndRunsScriptsOnce(t *testing.T) {
	in := setupInstance(t)
	in.spec["preInitScript"] = counterScript(in, "pre", "pre")
	in.set("postInitScript", counterScript(in, "post", "post"))

	in.mustSetup()
	first := walkTree(t, in.stateDir)
	log := in.mustSetup()
	if diff := cmp.Diff(first, walkTree(t, in.stateDir)); diff != "" {
		t.Errorf("second setup changed the state tree (-first +second):\n%s", diff)
	}
	c := in.read(filepath.Join(in.dir, "counter"))
	if testkit.CountLines(c, "pre") != 1 || testkit.CountLines(c, "post") != 1 {
		t.Errorf("scripts ran %d (pre) and %d (post) times over two setups, want once each; counter:\n%s", testkit.CountLines(c, "pre"), testkit.CountLines(c, "post"), c)
	}
	if strings.Count(log, "skipping init script") != 2 {
		t.Errorf("second setup did not log skipping both scripts:\n%s", log)
	}

	uid, gid := lookupUser(t, in.user)
	for _, e := range first {
		want, wantUID := os.FileMode(0o600), uid
		if e.Mode.IsDir() {
			want = os.ModeDir | 0o700
		}
		if e.Path == stateIDFile { // root's: the instance may delete it, not forge it
			wantUID = 0
		}
		if e.Mode != want || int(e.UID) != wantUID {
			t.Errorf("%s: mode %v uid %d, want %v owned by %s (%d)", e.Path, e.Mode, e.UID, want, in.user, uid)
		}
	}
	// opencode.json is exactly the config explain shows.
	ex := in.explain()
	var written any
	if err := json.Unmarshal([]byte(in.read(ex.Layout.ConfigFile)), &written); err != nil {
		t.Errorf("opencode.json: %v", err)
	} else if !reflect.DeepEqual(written, ex.OpencodeConfig) {
		t.Errorf("opencode.json = %v, want what explain shows: %v", written, ex.OpencodeConfig)
	}
	// The private dir: root's, readable by the instance group only where
	// the server or run needs it.
	for _, e := range walkTree(t, ex.Layout.Private) {
		wantMode, wantGID := os.FileMode(0o640), uint32(gid)
		switch {
		case e.Mode.IsDir():
			wantMode = os.ModeDir | 0o750
		case strings.HasSuffix(e.Path, ".sha256"):
			wantMode, wantGID = 0o600, 0
		}
		if e.Mode != wantMode || e.UID != 0 || e.GID != wantGID {
			t.Errorf("private %s: mode %v owner %d:%d, want %v root:%d", e.Path, e.Mode, e.UID, e.GID, wantMode, wantGID)
		}
	}
	if failed, why := in.setupFailed(); failed {
		t.Errorf("status says the last setup failed (%q) after a good setup", why)
	}

	in.mustSetup("--rerun-init")
	c = in.read(filepath.Join(in.dir, "counter"))
	if testkit.CountLines(c, "pre") != 2 || testkit.CountLines(c, "post") != 2 {
		t.Errorf("--rerun-init did not run both scripts again; counter:\n%s", c)
	}

	// Dropping a script forgets its stamp: adding it back runs it again.
	post := in.spec["postInitScript"]
	delete(in.spec, "postInitScript")
	in.writeSpec()
	in.mustSetup()
	in.set("postInitScript", post)
	in.mustSetup()
	c = in.read(filepath.Join(in.dir, "counter"))
	if testkit.CountLines(c, "pre") != 2 || testkit.CountLines(c, "post") != 3 {
		t.Errorf("a script removed from the spec and added back did not run exactly once more; counter:\n%s", c)
	}
}

// stateIDFile is setup's id of the stateDir, which the stamps record.
const stateIDFile = ".ocnix-state-id"

// The stamps live in root's directory, outside stateDir, but belong to the
// stateDir they set up: deleting stateDir to start afresh runs the init
// scripts again, and so does an id the instance deleted or forged (only its
// own scripts, which is harmless); an untouched stateDir runs nothing.
func TestSetupRunsScriptsAgainForAWipedStateDir(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(t *testing.T, in *instance)
		wantRuns int
	}{
		{name: "Untouched", mutate: func(*testing.T, *instance) {}, wantRuns: 1},
		{name: "Wiped", mutate: func(t *testing.T, in *instance) {
			if err := os.RemoveAll(in.stateDir); err != nil {
				t.Fatal(err)
			}
		}, wantRuns: 2},
		{name: "WipedAndRecreatedEmpty", mutate: func(t *testing.T, in *instance) {
			if err := os.RemoveAll(in.stateDir); err != nil {
				t.Fatal(err)
			}
			in.mkdir(in.stateDir, true)
			if err := os.Chmod(in.stateDir, 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantRuns: 2},
		{name: "IdForgedByTheInstance", mutate: func(t *testing.T, in *instance) {
			// The instance copies the id into a file of its own: not root's, so not trusted.
			p := filepath.Join(in.stateDir, stateIDFile)
			id := in.read(p)
			if len(strings.TrimSpace(id)) != 32 {
				t.Fatalf("%s holds %q, want a 32-digit hex id", p, id)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(id), 0o600); err != nil {
				t.Fatal(err)
			}
			mustRun(t, "chown", in.user+":"+in.user, p)
		}, wantRuns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := setupInstance(t)
			in.spec["preInitScript"] = counterScript(in, "pre", "pre")
			in.set("postInitScript", counterScript(in, "post", "post"))
			in.mustSetup()
			if fi, err := os.Lstat(filepath.Join(in.stateDir, stateIDFile)); err != nil {
				t.Errorf("setup left no %s in stateDir: %v", stateIDFile, err)
			} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode() != 0o600 {
				t.Errorf("%s: mode %v uid %d, want 0600 root", stateIDFile, fi.Mode(), st.Uid)
			}
			tt.mutate(t, in)
			log := in.mustSetup()
			c := in.read(filepath.Join(in.dir, "counter"))
			if testkit.CountLines(c, "pre") != tt.wantRuns || testkit.CountLines(c, "post") != tt.wantRuns {
				t.Errorf("scripts ran %d (pre) and %d (post) times, want %d each; counter:\n%s\nsecond setup:\n%s", testkit.CountLines(c, "pre"), testkit.CountLines(c, "post"), tt.wantRuns, c, log)
			}
			// Converged: a third setup runs nothing more.
			in.mustSetup()
			if c2 := in.read(filepath.Join(in.dir, "counter")); c2 != c {
				t.Errorf("a third setup ran a script again; counter:\n%s", c2)
			}
		})
	}
}

func TestSetupRunsAnEditedScriptAgain(t *testing.T) {
	in := setupInstance(t)
	in.spec["preInitScript"] = counterScript(in, "pre", "pre-v1")
	in.set("postInitScript", counterScript(in, "post", "post"))
	in.mustSetup()
	counterScript(in, "pre", "pre-v2")
	in.mustSetup()
	c := in.read(filepath.Join(in.dir, "counter"))
	if testkit.CountLines(c, "pre-v1") != 1 || testkit.CountLines(c, "pre-v2") != 1 || testkit.CountLines(c, "post") != 1 {
		t.Errorf("after editing pre only, want pre-v1, post, pre-v2 once each; counter:\n%s", c)
	}
}

func TestSetupFailingScriptFailsAndIsRetried(t *testing.T) {
	in := setupInstance(t)
	flag := filepath.Join(in.dir, "fail")
	in.spec["preInitScript"] = in.script("pre", fmt.Sprintf(`
for i in $(seq 1 30); do echo "out line $i"; done
if [ -e %s ]; then echo "giving up" >&2; exit 3; fi
echo pre >> %s`, flag, filepath.Join(in.dir, "counter")))
	in.set("postInitScript", counterScript(in, "post", "post"))
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	code, out := in.runSetup()
	if code != exitInitScript {
		t.Fatalf("setup with a failing script: exit %d, want %d:\n%s", code, exitInitScript, out)
	}
	// The error is the last thing setup prints; the log before it streams
	// the script's whole output.
	msg := out[max(strings.LastIndex(out, "opencode-launcher: "), 0):]
	for _, want := range []string{"preInitScript", "exited with status 3", "giving up", "| out line 30", "out line 12"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "out line 10\n") {
		t.Errorf("error holds more than the last %d lines:\n%s", tailLines, msg)
	}
	if failed, why := in.setupFailed(); !failed || !strings.Contains(why, "status 3") {
		t.Errorf("status: setupFailed %v, %q; want failed with the status", failed, why)
	}
	if _, err := os.Stat(filepath.Join(in.explain().Layout.Private, "init-pre.sha256")); !os.IsNotExist(err) {
		t.Errorf("a failed script left a stamp: %v", err)
	}
	if c := in.read(filepath.Join(in.dir, "counter")); c != "" {
		t.Errorf("post ran after pre failed, or pre recorded: %q", c)
	}

	// Same script content: with no stamp recorded, it must run again.
	os.Remove(flag)
	in.mustSetup()
	c := in.read(filepath.Join(in.dir, "counter"))
	if testkit.CountLines(c, "pre") != 1 || testkit.CountLines(c, "post") != 1 {
		t.Errorf("retry did not run both scripts once; counter:\n%s", c)
	}
	if failed, why := in.setupFailed(); failed {
		t.Errorf("status says failed after a good retry: %q", why)
	}

	// A failing post script likewise, and fixing it is enough.
	in.set("postInitScript", in.script("post", "echo 'the tail line'\nexit 4"))
	if code, out := in.runSetup(); code != exitInitScript || !strings.Contains(out, "postInitScript") || !strings.Contains(out, "exited with status 4") || !strings.Contains(out, "| the tail line") {
		t.Errorf("setup with a failing post script: exit %d, want %d with the status and the output tail:\n%s", code, exitInitScript, out)
	}
	in.set("postInitScript", in.script("post", "true"))
	in.mustSetup()
}

// timedOutScript runs setup with a 1 s initScriptTimeout and a script that
// waits on a background sleep; it checks that setup says so in time and
// returns the pids of the script and of its background job.
func timedOutScript(t *testing.T) (script, background int) {
	t.Helper()
	in := setupInstance(t)
	bgFile, pidFile := filepath.Join(in.dir, "bg"), filepath.Join(in.dir, "pid")
	in.spec["initScriptTimeout"] = 1
	// `run` as root gives the sandbox a PID namespace with its own /proc,
	// where $$ and $! are not the test's pids: each process writes its pid
	// id (testkit.HostPid's "NSPIDS@INO"; a redirected loop runs in the
	// shell itself, so /proc/self is that shell), translated below.
	idOf := func(out string) string {
		return `while read k v; do if [ "$k" = NSpid: ]; then printf '%s@' "$v"; fi; done </proc/self/status >` + out + `; stat -L -c %i /proc/self/ns/pid >>` + out
	}
	bg := strings.ReplaceAll(idOf(bgFile), `'`, `"`)
	in.set("preInitScript", in.script("pre", "sh -c '"+bg+"; exec sleep 60' &\n"+idOf(pidFile)+"\nwait"))
	start := time.Now()
	code, out := in.runSetup()
	if code != exitInitScript || !strings.Contains(out, "did not finish within initScriptTimeout (1s)") {
		t.Fatalf("setup exit %d, want %d naming the timeout:\n%s", code, exitInitScript, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 1s timeout took %v", d)
	}
	// 0: no process with that id is left, which is what the callers want.
	pids := make([]int, 2)
	for i, f := range []string{pidFile, bgFile} {
		id := strings.TrimSpace(in.read(f))
		pid, found, err := testkit.HostPid(id)
		if err != nil {
			t.Fatalf("script did not record a pid id in %s: %q: %v", f, id, err)
		}
		if found {
			pids[i] = pid
		}
	}
	return pids[0], pids[1]
}

// TestSetupScriptTimeoutKillsTheScript: the script runs under run's
// supervisor, in the sandbox; the timeout must take it down.
func TestSetupScriptTimeoutKillsTheScript(t *testing.T) {
	script, background := timedOutScript(t)
	t.Cleanup(func() {
		if background != 0 {
			killAndWait(background)
		}
	})
	mustBeGone(t, "the script", script)
}

// TestSetupTimeoutEndsBackgroundJobs: on a timeout setup SIGKILLs the
// process group of `run`; the script dies by its parent-death signal, and a
// job it left in the background (in the sandbox's own process group) is
// re-parented to setup, the child subreaper, which ends it too. This used to
// be an open finding outside systemd ("Orphans of a killed supervisor").
func TestSetupTimeoutEndsBackgroundJobs(t *testing.T) {
	_, background := timedOutScript(t)
	if background == 0 {
		return // gone with the sandbox's PID namespace
	}
	deadline := time.Now().Add(3 * time.Second)
	for alive(background) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !alive(background) {
		return
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", background))
	confined := strings.Contains(string(status), "NoNewPrivs:\t1") && strings.Contains(string(status), "Seccomp:\t2")
	killAndWait(background)
	if !confined {
		t.Fatalf("ESCAPE: the orphaned background job %d of a timed-out init script is not confined:\n%s", background, status)
	}
	t.Fatalf("the background job %d of a timed-out init script outlived setup (still confined)", background)
}

func TestSetupKilledDuringAScriptConverges(t *testing.T) {
	in := setupInstance(t)
	counter := filepath.Join(in.dir, "counter")
	in.set("preInitScript", in.script("pre", "echo start >> "+counter+"\nsleep 2\necho done >> "+counter))

	cmd := exec.Command(launcherBin, "setup", "--config", in.specPath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
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

	if failed, why := in.setupFailed(); !failed {
		t.Errorf("after kill -9 mid-setup status says the setup did not fail, want 'did not finish'")
	} else if !strings.Contains(why, "did not finish") {
		t.Errorf("reason = %q, want it to say setup did not finish", why)
	}

	// The lock died with the killed setup: this must not wait for it.
	start := time.Now()
	in.mustSetup()
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("setup after kill -9 took %v: was it waiting for the dead setup's lock?", d)
	}
	time.Sleep(500 * time.Millisecond) // let a surviving killed script show itself
	c := in.read(counter)
	if testkit.CountLines(c, "start") != 2 || testkit.CountLines(c, "done") != 1 {
		t.Errorf("want the killed run's start, then one full run (start, done); counter:\n%s", c)
	}
	in.mustSetup()
	if c2 := in.read(counter); c2 != c {
		t.Errorf("a third setup ran the script again; counter:\n%s", c2)
	}
	if failed, why := in.setupFailed(); failed {
		t.Errorf("status says failed after convergence: %q", why)
	}
}

// spanScript records "start end" times (ns) of its run in file.
func spanScript(in *instance, file string, sleep string) string {
	return in.script("pre", fmt.Sprintf("s=$(date +%%s%%N)\nsleep %s\necho \"$s $(date +%%s%%N)\" >> %s", sleep, file))
}

type span struct{ start, end int64 }

func readSpans(t *testing.T, file string) []span {
	t.Helper()
	b, _ := os.ReadFile(file)
	var out []span
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var s span
		if _, err := fmt.Sscan(l, &s.start, &s.end); err != nil {
			t.Fatalf("span line %q: %v", l, err)
		}
		out = append(out, s)
	}
	return out
}

// setupsAtOnce runs one setup per instance at the same time.
func setupsAtOnce(t *testing.T, args []string, ins ...*instance) {
	t.Helper()
	var wg sync.WaitGroup
	codes, outs := make([]int, len(ins)), make([]string, len(ins))
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], outs[i] = in.runSetup(args...)
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != 0 {
			t.Fatalf("setup %d: exit %d:\n%s", i, code, outs[i])
		}
	}
}

func TestSetupConcurrentRunsOfOneInstanceSerialise(t *testing.T) {
	in := setupInstance(t)
	spans := filepath.Join(in.dir, "spans")
	in.set("preInitScript", spanScript(in, spans, "1"))
	setupsAtOnce(t, []string{"--rerun-init"}, in, in)
	sp := readSpans(t, spans)
	if len(sp) != 2 {
		t.Fatalf("want 2 script runs, got %v", sp)
	}
	if sp[0].start < sp[1].end && sp[1].start < sp[0].end {
		t.Errorf("two setups of one instance ran their scripts at once: %v", sp)
	}
}

func TestSetupsOfTwoInstancesDoNotBlockEachOther(t *testing.T) {
	a, b := setupInstance(t), setupInstance(t)
	a.set("preInitScript", spanScript(a, filepath.Join(a.dir, "spans"), "1.5"))
	b.set("preInitScript", spanScript(b, filepath.Join(b.dir, "spans"), "1.5"))
	setupsAtOnce(t, nil, a, b)
	sa, sb := readSpans(t, filepath.Join(a.dir, "spans")), readSpans(t, filepath.Join(b.dir, "spans"))
	if !(sa[0].start < sb[0].end && sb[0].start < sa[0].end) {
		t.Errorf("setups of two instances did not overlap: %v and %v", sa, sb)
	}
}

// TestSetupInitScriptRunsSandboxedWithSecrets: the script sees the
// environmentFile, HOME=stateDir and cwd=directory, runs in the sandbox, and
// the secret shows up in no output and no file of the state dir.
func TestSetupInitScriptRunsSandboxedWithSecrets(t *testing.T) {
	in := setupInstance(t)
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
echo denied > `+in.dir+`/result
echo 'pre ran'`))

	out := in.mustSetup()
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
	// Converged: a second setup skips the script; --rerun-init runs it again.
	again := in.mustSetup()
	if !strings.Contains(again, "skipping init script") {
		t.Errorf("second setup did not skip the script:\n%s", again)
	}
	rerun := in.mustSetup("--rerun-init")
	explainText, _, _ := in.launcher(context.Background(), "explain")
	explainJSON, _, _ := in.launcher(context.Background(), "explain", "--json")
	for what, text := range map[string]string{"setup output": out + again, "setup --rerun-init output": rerun, "explain": explainText, "explain --json": explainJSON} {
		if strings.Contains(text, marker) {
			t.Errorf("%s contains the secret:\n%s", what, text)
		}
	}
	if hits := grepTree(in.stateDir, marker); len(hits) > 0 {
		t.Errorf("secret found in state dir files: %v", hits)
	}
}

func TestSetupReplacesPlantedSymlinksWithoutFollowingThem(t *testing.T) {
	in := setupInstance(t)
	in.mustSetup()
	l := in.explain().Layout

	victimDir := t.TempDir()
	victim := filepath.Join(victimDir, "shadow")
	os.WriteFile(victim, []byte("root:secret"), 0o640)
	before := walkTree(t, victimDir)
	// What a hostile instance can do inside its own stateDir.
	plant := map[string]string{
		l.Data:  victimDir,
		l.Cache: victim,
	}
	// The bookkeeping dir of older releases (.ocnix) is no longer setup's: a
	// link there stays, unfollowed.
	if err := os.Symlink(victimDir, filepath.Join(l.StateDir, ".ocnix")); err != nil {
		t.Fatal(err)
	}
	for p, target := range plant {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	in.mustSetup()
	if diff := cmp.Diff(before, walkTree(t, victimDir)); diff != "" {
		t.Errorf("setup changed a symlink's target (-before +after):\n%s", diff)
	}
	for p := range plant {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s is still a symlink or missing after setup: %v %v", p, fi, err)
		}
	}
}

func TestSetupChecksPathsAndAccounts(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(in *instance)
		wantCode int
		wantMsg  string
	}{
		{
			name:     "MissingDirectoryIsNoInput",
			mutate:   func(in *instance) { in.set("directory", filepath.Join(in.base, "nope")) },
			wantCode: exitNoInput,
			wantMsg:  "directory " + "%BASE%/nope does not exist",
		},
		{
			name: "DirectoryTheUserCannotWriteIsRefusedNotChowned",
			mutate: func(in *instance) {
				p := filepath.Join(in.base, "rootowned")
				in.mkdir(p, false)
				in.set("directory", p)
			},
			wantCode: exitPermission,
			wantMsg:  "is not writable by user",
		},
		{
			name: "MissingReadWritePathNamesTheKey",
			mutate: func(in *instance) {
				in.set("sandbox", map[string]any{"readWritePaths": []string{filepath.Join(in.base, "rw-missing")}})
			},
			wantCode: exitNoInput,
			wantMsg:  "sandbox.readWritePaths[0]",
		},
		{
			name: "MissingReadOnlyPathNamesTheKey",
			mutate: func(in *instance) {
				in.set("sandbox", map[string]any{"readOnlyPaths": []string{filepath.Join(in.base, "scripts"), filepath.Join(in.base, "ro-missing")}})
			},
			wantCode: exitNoInput,
			wantMsg:  "sandbox.readOnlyPaths[1]",
		},
		{
			name:     "MissingEnvironmentFileNamesThePath",
			mutate:   func(in *instance) { in.set("environmentFile", filepath.Join(in.base, "secrets.env")) },
			wantCode: exitNoInput,
			wantMsg:  "environmentFile %BASE%/secrets.env does not exist",
		},
		{
			name: "StateDirUnderAUserOwnedParentIsRefused",
			mutate: func(in *instance) {
				p := filepath.Join(in.base, "userowned")
				in.mkdir(p, true)
				in.set("stateDir", filepath.Join(p, in.name))
			},
			wantCode: exitPermission,
			wantMsg:  "not root, so that user could swap what lies below",
		},
		{
			name: "StateDirThatIsASymlinkIsRefusedNotReplaced",
			mutate: func(in *instance) {
				real := filepath.Join(in.base, "real-state")
				in.mkdir(real, false)
				link := filepath.Join(in.base, "state", "linked")
				if err := os.Symlink(real, link); err != nil {
					in.t.Fatal(err)
				}
				in.set("stateDir", link)
			},
			wantCode: exitPermission,
			wantMsg:  "is a symlink",
		},
		{
			name:     "MissingUserIsNoInput",
			mutate:   func(in *instance) { in.set("user", "ocnix-t-nosuchuser") },
			wantCode: exitNoInput,
			wantMsg:  `user "ocnix-t-nosuchuser"`,
		},
		{
			name: "MissingPostScriptFailsBeforePreRuns",
			mutate: func(in *instance) {
				in.spec["preInitScript"] = counterScript(in, "pre", "pre")
				in.set("postInitScript", filepath.Join(in.base, "scripts", "gone"))
			},
			wantCode: exitNoInput,
			wantMsg:  "postInitScript",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := setupInstance(t)
			tt.mutate(in)
			code, out := in.runSetup()
			want := strings.ReplaceAll(tt.wantMsg, "%BASE%", in.base)
			if code != tt.wantCode || !strings.Contains(out, want) {
				t.Errorf("setup = exit %d; want exit %d and %q in:\n%s", code, tt.wantCode, want, out)
			}
			if c := in.read(filepath.Join(in.dir, "counter")); c != "" {
				t.Errorf("a script ran although setup's checks failed: %q", c)
			}
			if fi, err := os.Stat(in.spec["directory"].(string)); err == nil && in.spec["directory"] != in.dir {
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o755 {
					t.Errorf("setup changed the project directory: uid %d mode %v", st.Uid, fi.Mode())
				}
			}
		})
	}
}

func TestSetupRefusesNonRoot(t *testing.T) {
	in := setupInstance(t)
	uid, gid := lookupUser(t, in.user)
	cmd := exec.Command(launcherBin, "setup", "--config", in.specPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitPermission || !strings.Contains(string(out), "setup must run as root") {
		t.Errorf("setup as %s = %v, %s; want exit %d saying root is needed", in.user, err, out, exitPermission)
	}
}

func TestSetupInitScriptRunsInTheInstanceNetns(t *testing.T) {
	in := setupInstance(t)
	netFile := filepath.Join(in.dir, "netns")
	in.spec["networkIsolation"] = map[string]any{"enable": true}
	in.set("preInitScript", in.script("pre", "readlink /proc/self/ns/net > "+netFile))
	t.Cleanup(func() {
		if out, errs, code := in.launcher(context.Background(), "teardown"); code != 0 {
			t.Errorf("teardown exit %d:\n%s%s", code, out, errs)
		}
	})
	in.mustSetup()
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
