package launcher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ocnix/ocnix/internal/testkit"
)

// counterScript appends word to directory/counter, so a test can count runs.
func counterScript(in *testInstance, name, word string) string {
	return in.script(name, "echo "+word+" >> "+filepath.Join(in.dir, "counter"))
}

func count(s, word string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if l == word {
			n++
		}
	}
	return n
}

func TestSetupTwiceGivesTheSameTreeAndRunsScriptsOnce(t *testing.T) {
	in := newTestInstance(t)
	in.spec["preInitScript"] = counterScript(in, "pre", "pre")
	in.set("postInitScript", counterScript(in, "post", "post"))

	in.mustSetup(false)
	first := walkTree(t, in.stateDir)
	log := in.mustSetup(false)
	if diff := cmp.Diff(first, walkTree(t, in.stateDir)); diff != "" {
		t.Errorf("second setup changed the state tree (-first +second):\n%s", diff)
	}
	c := in.read(filepath.Join(in.dir, "counter"))
	if count(c, "pre") != 1 || count(c, "post") != 1 {
		t.Errorf("scripts ran %d (pre) and %d (post) times over two setups, want once each; counter:\n%s", count(c, "pre"), count(c, "post"), c)
	}
	if strings.Count(log, "skipping init script") != 2 {
		t.Errorf("second setup did not log skipping both scripts:\n%s", log)
	}

	u, _ := user.Lookup(in.user)
	uid, _ := strconv.Atoi(u.Uid)
	for _, e := range first {
		want := os.FileMode(0o600)
		if e.Mode.IsDir() {
			want = os.ModeDir | 0o700
		}
		if e.Mode != want || int(e.UID) != uid {
			t.Errorf("%s: mode %v uid %d, want %v owned by %s (%d)", e.Path, e.Mode, e.UID, want, in.user, uid)
		}
	}
	s, _ := LoadFile(in.specPath)
	want, _ := opencodeConfigJSON(s)
	l := LayoutFor(s)
	if got := in.read(l.ConfigFile); got != string(want) {
		t.Errorf("opencode.json = %s, want %s", got, want)
	}
	// The private dir: root's, readable by the instance group only where
	// the server or run needs it.
	gid := lookupTestUser(t, in.user).gid
	for _, e := range walkTree(t, l.Private) {
		wantMode, wantGID := os.FileMode(0o640), gid
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
	if failed, why, err := lastSetupFailed(LayoutFor(s)); failed || err != nil {
		t.Errorf("lastSetupFailed = %v, %q, %v after a good setup", failed, why, err)
	}

	in.mustSetup(true)
	c = in.read(filepath.Join(in.dir, "counter"))
	if count(c, "pre") != 2 || count(c, "post") != 2 {
		t.Errorf("--rerun-init did not run both scripts again; counter:\n%s", c)
	}

	// Dropping a script forgets its stamp: adding it back runs it again.
	post := in.spec["postInitScript"]
	delete(in.spec, "postInitScript")
	in.writeSpec()
	in.mustSetup(false)
	in.set("postInitScript", post)
	in.mustSetup(false)
	c = in.read(filepath.Join(in.dir, "counter"))
	if count(c, "pre") != 2 || count(c, "post") != 3 {
		t.Errorf("a script removed from the spec and added back did not run exactly once more; counter:\n%s", c)
	}
}

func TestSetupRunsAnEditedScriptAgain(t *testing.T) {
	in := newTestInstance(t)
	in.spec["preInitScript"] = counterScript(in, "pre", "pre-v1")
	in.set("postInitScript", counterScript(in, "post", "post"))
	in.mustSetup(false)
	counterScript(in, "pre", "pre-v2")
	in.mustSetup(false)
	c := in.read(filepath.Join(in.dir, "counter"))
	if count(c, "pre-v1") != 1 || count(c, "pre-v2") != 1 || count(c, "post") != 1 {
		t.Errorf("after editing pre only, want pre-v1, post, pre-v2 once each; counter:\n%s", c)
	}
}

func TestSetupFailingScriptFailsAndIsRetried(t *testing.T) {
	in := newTestInstance(t)
	flag := filepath.Join(in.dir, "fail")
	in.spec["preInitScript"] = in.script("pre", fmt.Sprintf(`
for i in $(seq 1 30); do echo "out line $i"; done
if [ -e %s ]; then echo "giving up" >&2; exit 3; fi
echo pre >> %s`, flag, filepath.Join(in.dir, "counter")))
	in.set("postInitScript", counterScript(in, "post", "post"))
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	_, err := in.setup(false)
	if ExitCode(err) != ExitInitScript {
		t.Fatalf("setup with a failing script: exit %d (%v), want %d", ExitCode(err), err, ExitInitScript)
	}
	msg := err.Error()
	for _, want := range []string{"preInitScript", "exited with status 3", "giving up", "out line 30", "out line 12"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "out line 10\n") {
		t.Errorf("error holds more than the last %d lines:\n%s", tailLines, msg)
	}
	s, _ := LoadFile(in.specPath)
	l := LayoutFor(s)
	if failed, why, _ := lastSetupFailed(l); !failed || !strings.Contains(why, "status 3") {
		t.Errorf("lastSetupFailed = %v, %q; want failed with the status", failed, why)
	}
	if _, err := os.Stat(filepath.Join(l.Private, "init-pre.sha256")); !os.IsNotExist(err) {
		t.Errorf("a failed script left a stamp: %v", err)
	}
	if c := in.read(filepath.Join(in.dir, "counter")); c != "" {
		t.Errorf("post ran after pre failed, or pre recorded: %q", c)
	}

	// Same script content: with no stamp recorded, it must run again.
	os.Remove(flag)
	in.mustSetup(false)
	c := in.read(filepath.Join(in.dir, "counter"))
	if count(c, "pre") != 1 || count(c, "post") != 1 {
		t.Errorf("retry did not run both scripts once; counter:\n%s", c)
	}
	if failed, why, _ := lastSetupFailed(l); failed {
		t.Errorf("lastSetupFailed after a good retry: %q", why)
	}
}

func TestSetupScriptTimeoutKillsItsProcessGroup(t *testing.T) {
	in := newTestInstance(t)
	pidFile := filepath.Join(in.dir, "pid")
	in.spec["initScriptTimeout"] = 1
	in.set("preInitScript", in.script("pre", "sleep 60 & echo $! > "+pidFile+"\nwait"))
	start := time.Now()
	_, err := in.setup(false)
	if ExitCode(err) != ExitInitScript || !strings.Contains(err.Error(), "did not finish within initScriptTimeout (1s)") {
		t.Fatalf("setup = exit %d, %v; want the timeout named", ExitCode(err), err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 1s timeout took %v", d)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(in.read(pidFile)))
	if pid == 0 {
		t.Fatal("script did not record its background pid")
	}
	waitGone(t, pid)
}

func TestSetupKilledDuringAScriptConverges(t *testing.T) {
	in := newTestInstance(t)
	counter := filepath.Join(in.dir, "counter")
	in.set("preInitScript", in.script("pre", "echo start >> "+counter+"\nsleep 2\necho done >> "+counter))

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(self, "-test.run=^$")
	helper.Env = append(os.Environ(), helperSpecEnv+"="+in.specPath, helperLockEnv+"="+in.lockDir)
	var out bytes.Buffer
	helper.Stdout, helper.Stderr = &out, &out
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(in.read(counter), "start") {
		if time.Now().After(deadline) {
			helper.Process.Kill()
			helper.Wait()
			t.Fatalf("script never started; helper said:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()

	s, _ := LoadFile(in.specPath)
	if failed, why, _ := lastSetupFailed(LayoutFor(s)); !failed {
		t.Errorf("after kill -9 mid-setup lastSetupFailed = false, want 'did not finish'")
	} else if !strings.Contains(why, "did not finish") {
		t.Errorf("reason = %q, want it to say setup did not finish", why)
	}

	// The lock died with the helper: this must not wait.
	start := time.Now()
	in.mustSetup(false)
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("setup after kill -9 took %v: was it waiting for the dead setup's lock?", d)
	}
	time.Sleep(500 * time.Millisecond) // let a surviving killed script show itself
	c := in.read(counter)
	if count(c, "start") != 2 || count(c, "done") != 1 {
		t.Errorf("want the killed run's start, then one full run (start, done); counter:\n%s", c)
	}
	in.mustSetup(false)
	if c2 := in.read(counter); c2 != c {
		t.Errorf("a third setup ran the script again; counter:\n%s", c2)
	}
	if failed, why, _ := lastSetupFailed(LayoutFor(s)); failed {
		t.Errorf("lastSetupFailed after convergence: %q", why)
	}
}

// spanScript records "start end" times (ns) of its run in file.
func spanScript(in *testInstance, file string, sleep string) string {
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

func TestSetupConcurrentRunsOfOneInstanceSerialise(t *testing.T) {
	in := newTestInstance(t)
	spans := filepath.Join(in.dir, "spans")
	in.set("preInitScript", spanScript(in, spans, "1"))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = in.setup(true)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sp := readSpans(t, spans)
	if len(sp) != 2 {
		t.Fatalf("want 2 script runs, got %v", sp)
	}
	if sp[0].start < sp[1].end && sp[1].start < sp[0].end {
		t.Errorf("two setups of one instance ran their scripts at once: %v", sp)
	}
}

func TestSetupsOfTwoInstancesDoNotBlockEachOther(t *testing.T) {
	a, b := newTestInstance(t), newTestInstance(t)
	b.lockDir = a.lockDir // same lock directory, as in production
	a.set("preInitScript", spanScript(a, filepath.Join(a.dir, "spans"), "1.5"))
	b.set("preInitScript", spanScript(b, filepath.Join(b.dir, "spans"), "1.5"))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, in := range []*testInstance{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = in.setup(false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sa, sb := readSpans(t, filepath.Join(a.dir, "spans")), readSpans(t, filepath.Join(b.dir, "spans"))
	if !(sa[0].start < sb[0].end && sb[0].start < sa[0].end) {
		t.Errorf("setups of two instances did not overlap: %v and %v", sa, sb)
	}
}

func TestSetupSecretReachesTheScriptOnly(t *testing.T) {
	in := newTestInstance(t)
	marker := "ocnix-marker-" + testkit.RandHex(8)
	envFile := filepath.Join(in.base, "secrets.env")
	if err := os.WriteFile(envFile, []byte("API_TOKEN="+marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seen := filepath.Join(in.dir, "seen")
	in.spec["environmentFile"] = envFile
	in.set("preInitScript", in.script("pre", `printf '%s' "$API_TOKEN" > `+seen+"\necho 'pre ran'"))

	log := in.mustSetup(false)
	log += in.mustSetup(true)
	if got := in.read(seen); got != marker {
		t.Errorf("script saw API_TOKEN=%q, want the marker", got)
	}
	if strings.Contains(log, marker) {
		t.Errorf("setup log contains the secret:\n%s", log)
	}
	if hits := grepTree(t, in.stateDir, marker); len(hits) > 0 {
		t.Errorf("secret found in state dir files: %v", hits)
	}
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{{"explain", "--config", in.specPath}, {"explain", "--json", "--config", in.specPath}} {
		Main(context.Background(), args, &stdout, &stderr)
	}
	if strings.Contains(stdout.String()+stderr.String(), marker) {
		t.Errorf("explain output contains the secret")
	}
}

func TestSetupReplacesPlantedSymlinksWithoutFollowingThem(t *testing.T) {
	in := newTestInstance(t)
	in.mustSetup(false)
	s, _ := LoadFile(in.specPath)
	l := LayoutFor(s)

	victimDir := t.TempDir()
	victim := filepath.Join(victimDir, "shadow")
	os.WriteFile(victim, []byte("root:secret"), 0o640)
	before := walkTree(t, victimDir)
	// What a hostile instance can do inside its own stateDir.
	plant := map[string]string{
		l.Data:  victimDir,
		l.Cache: victim,
	}
	// The old bookkeeping dir is no longer setup's: a link there stays, unfollowed.
	if err := os.Symlink(victimDir, filepath.Join(l.StateDir, legacyMetaDir)); err != nil {
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
	in.mustSetup(false)
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
		mutate   func(in *testInstance)
		wantCode int
		wantMsg  string
	}{
		{
			name:     "MissingDirectoryIsNoInput",
			mutate:   func(in *testInstance) { in.set("directory", filepath.Join(in.base, "nope")) },
			wantCode: ExitNoInput,
			wantMsg:  "directory " + "%BASE%/nope does not exist",
		},
		{
			name: "DirectoryTheUserCannotWriteIsRefusedNotChowned",
			mutate: func(in *testInstance) {
				p := filepath.Join(in.base, "rootowned")
				in.mkdir(p, false)
				in.set("directory", p)
			},
			wantCode: ExitPermission,
			wantMsg:  "is not writable by user",
		},
		{
			name: "MissingReadWritePathNamesTheKey",
			mutate: func(in *testInstance) {
				in.set("sandbox", map[string]any{"readWritePaths": []string{filepath.Join(in.base, "rw-missing")}})
			},
			wantCode: ExitNoInput,
			wantMsg:  "sandbox.readWritePaths[0]",
		},
		{
			name: "MissingReadOnlyPathNamesTheKey",
			mutate: func(in *testInstance) {
				in.set("sandbox", map[string]any{"readOnlyPaths": []string{in.dir, filepath.Join(in.base, "ro-missing")}})
			},
			wantCode: ExitNoInput,
			wantMsg:  "sandbox.readOnlyPaths[1]",
		},
		{
			name:     "MissingEnvironmentFileNamesThePath",
			mutate:   func(in *testInstance) { in.set("environmentFile", filepath.Join(in.base, "secrets.env")) },
			wantCode: ExitNoInput,
			wantMsg:  "environmentFile %BASE%/secrets.env does not exist",
		},
		{
			name: "StateDirUnderAUserOwnedParentIsRefused",
			mutate: func(in *testInstance) {
				p := filepath.Join(in.base, "userowned")
				in.mkdir(p, true)
				in.set("stateDir", filepath.Join(p, in.name))
			},
			wantCode: ExitPermission,
			wantMsg:  "not root, so that user could swap stateDir",
		},
		{
			name: "StateDirThatIsASymlinkIsRefusedNotReplaced",
			mutate: func(in *testInstance) {
				real := filepath.Join(in.base, "real-state")
				in.mkdir(real, false)
				link := filepath.Join(in.base, "state", "linked")
				if err := os.Symlink(real, link); err != nil {
					in.t.Fatal(err)
				}
				in.set("stateDir", link)
			},
			wantCode: ExitPermission,
			wantMsg:  "is a symlink",
		},
		{
			name:     "MissingUserIsNoInput",
			mutate:   func(in *testInstance) { in.set("user", "ocnix-t-nosuchuser") },
			wantCode: ExitNoInput,
			wantMsg:  `user "ocnix-t-nosuchuser"`,
		},
		{
			name: "MissingPostScriptFailsBeforePreRuns",
			mutate: func(in *testInstance) {
				in.spec["preInitScript"] = counterScript(in, "pre", "pre")
				in.set("postInitScript", filepath.Join(in.base, "scripts", "gone"))
			},
			wantCode: ExitNoInput,
			wantMsg:  "postInitScript",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newTestInstance(t)
			tt.mutate(in)
			_, err := in.setup(false)
			want := strings.ReplaceAll(tt.wantMsg, "%BASE%", in.base)
			if ExitCode(err) != tt.wantCode || err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("setup = exit %d, %v; want exit %d and %q", ExitCode(err), err, tt.wantCode, want)
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

// TestLastSetupFailedRefusesWhileARecordSaysRunning: a server start during
// a setup, or after one that crashed, is refused. (Init scripts get past this
// check because run skips it for `-- CMD`.)
func TestLastSetupFailedRefusesWhileARecordSaysRunning(t *testing.T) {
	in := newTestInstance(t)
	in.mustSetup(false)
	s, _ := LoadFile(in.specPath)
	st := testSetup(s, in.specPath, in.lockDir, &testkit.LockedBuffer{})
	var err error
	if st.id, err = lookupIdentity(s); err != nil {
		t.Fatal(err)
	}
	if st.priv, err = openPrivateDir(st.layout.Private, st.id.gid); err != nil {
		t.Fatal(err)
	}
	defer st.priv.Close()
	if err := st.recordSetup(setupRunning, ""); err != nil {
		t.Fatal(err)
	}
	failed, why, err := lastSetupFailed(st.layout)
	if err != nil || !failed || !strings.Contains(why, "did not finish") {
		t.Errorf("lastSetupFailed = %v, %q, %v; want failed, \"did not finish\"", failed, why, err)
	}
}
