package childproc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func shCmd(script string) *exec.Cmd { return exec.Command("/bin/sh", "-c", script) }

func TestRunChildReportsStatusAndOutput(t *testing.T) {
	tb := NewTailBuffer(5)
	res, err := Run(context.Background(), shCmd("echo out; echo err >&2; exit 7"), 10*time.Second, tb)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 7 || res.TimedOut || res.Signaled {
		t.Errorf("result = %+v, want status 7", res)
	}
	if got := strings.Join(tb.Lines(), ","); got != "out,err" {
		t.Errorf("output = %q, want out,err", got)
	}
}

// alive reports whether pid still runs (a zombie counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("pid %d survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunChildTimeoutKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	res, err := Run(context.Background(), shCmd("sleep 60 & echo $! > "+pidFile+"; wait"), 500*time.Millisecond, NewTailBuffer(5))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut {
		t.Errorf("result = %+v, want timedOut", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to enforce a 500ms timeout", d)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("background pid: %q", b)
	}
	waitGone(t, pid)
}

func TestRunChildKillsLeftoversAfterExit(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The leftover keeps the output pipe open; Run must not wait for it.
	start := time.Now()
	res, err := Run(context.Background(), shCmd("sleep 60 & echo $! > "+pidFile+"; exit 0"), 30*time.Second, NewTailBuffer(5))
	if err != nil || res.Status != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v; a leftover holding the pipe stalled Run", d)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitGone(t, pid)
}

// TestRunKillsOrphansOutsideTheGroup: a job that left the child's process
// group (setsid, as a sandbox's own group does) is out of reach of the group
// kill; it is re-parented to Run's process (the subreaper) and ended there,
// with its own children, on exit and on timeout alike.
func TestRunKillsOrphansOutsideTheGroup(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skipf("SKIPPED %s: no setsid(1) here: %v", t.Name(), err)
	}
	for _, tc := range []struct {
		name    string
		script  string
		timeout time.Duration
	}{
		{"OnExit", "exit 0", 30 * time.Second},
		{"OnTimeout", "sleep 60", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			outer, inner := filepath.Join(dir, "outer"), filepath.Join(dir, "inner")
			// setsid's child forks once more: the grandchild comes to us only
			// after its parent is killed.
			script := "setsid sh -c 'sleep 60 & echo $! > " + inner + "; echo $$ > " + outer + "; wait' &\n" +
				"while [ ! -s " + inner + " ]; do sleep 0.01; done\n" + tc.script
			res, err := Run(context.Background(), shCmd(script), tc.timeout, NewTailBuffer(5))
			if err != nil {
				t.Fatalf("Run = %+v, %v", res, err)
			}
			for _, f := range []string{outer, inner} {
				b, _ := os.ReadFile(f)
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatalf("%s: no pid recorded", f)
				}
				waitGone(t, pid)
			}
		})
	}
}
