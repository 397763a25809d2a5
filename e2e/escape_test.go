package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// TestEscapeBattery is issue 10 item 7: ways out of the sandbox that a
// hostile agent would try, each with its positive twin (the same probe
// outside the sandbox, as root, succeeds or fails for the kernel's own
// reason), so a denial is the sandbox's doing. DAC would allow every read
// below (the files are 0666/0644): only the sandbox stands in the way.
func TestEscapeBattery(t *testing.T) {
	si := newSandboxInstance(t, "esc", nil)
	secret := filepath.Join(si.outside, "secret")
	tests := []struct {
		name     string
		args     []string
		want     string
		bareWant string
	}{
		{"HardLinkOutsideFileIntoDirectory", []string{"hardlink", secret, filepath.Join(si.dir, "linked")}, "EXDEV", "ok"},
		{"SymlinkToOutsideFile", []string{"symlink-read", secret, filepath.Join(si.dir, "sym")}, "EACCES", "ok"},
		{"OPathDirThenOpenat", []string{"opath-openat", si.outside, "secret"}, "EACCES", "ok"},
		{"OPathFileReopenedThroughProcSelfFd", []string{"opath-reopen", secret}, "EACCES", "ok"},
		{"ProcSelfRoot", []string{"proc-root-read", secret}, "EACCES", "ok"},
		{"ProcessVMWritevSupervisor", []string{"vm-write", "parent"}, "EPERM", ""},
		{"ProcessVMWritevSelf", []string{"vm-write", "self"}, "EPERM", "ok"},
		{"PtraceSupervisor", []string{"ptrace-parent"}, "EPERM", ""},
		// No bare twin: outside, the child would become a zombie of the test.
		{"CloneParent", []string{"clone-parent"}, "EPERM", ""},
		// The supervisor is outside the sandbox's PID namespace: no pid.
		{"SignalSupervisorKill", []string{"kill-parent", "9"}, "ESRCH", ""},
		{"SignalSupervisorProbe", []string{"kill-parent", "0"}, "ESRCH", "ok"},
		{"Userfaultfd", []string{"esc-userfaultfd"}, "EPERM", "ok"},
		{"PerfEventOpen", []string{"esc-perf-event-open"}, "EPERM", "ok"},
		{"AddKey", []string{"esc-add-key"}, "EPERM", "ok"},
		{"IoUringEnter", []string{"esc-io-uring-enter"}, "ENOSYS", "EBADF"},
		{"IoUringRegister", []string{"esc-io-uring-register"}, "ENOSYS", "EINVAL"},
		{"Clone3", []string{"esc-clone3"}, "ENOSYS", "EINVAL"},
		{"MemfdExecStaysConfined", []string{"esc-memfd-exec", "read", secret}, "ok EACCES", "ok ok"},
		{"MemfdExecStaysSeccomped", []string{"esc-memfd-exec", "esc-add-key"}, "ok EPERM", "ok ok"},
		{"TIOCSTI", []string{"esc-tiocsti"}, "EPERM", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe(tt.args...); got != tt.want {
				t.Errorf("sandboxed probe %v = %q, want %q", tt.args, got, tt.want)
			}
			if tt.bareWant != "" {
				if got := bare(t, tt.args...); got != tt.bareWant {
					t.Errorf("bare probe %v = %q, want %q (the positive twin)", tt.args, got, tt.bareWant)
				}
			}
			os.Remove(filepath.Join(si.dir, "linked"))
		})
	}
}

// TestAnotherInstanceIsOutOfReach: instance a tries every channel to
// instance b's state. DAC is opened up first (b's dirs world-readable), so
// each denial is the sandbox's; the twin reads the same path bare.
func TestAnotherInstanceIsOutOfReach(t *testing.T) {
	a := newSandboxInstance(t, "esca", nil)
	b := newInstance(t, "escb", nil)
	b.setup()
	stateFile := filepath.Join(b.stateDir, "data", "notes")
	if err := os.WriteFile(stateFile, []byte("b's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(launcherDirBase, b.name)
	for _, d := range []string{b.stateDir, filepath.Join(b.stateDir, "data"), private} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(private, "opencode.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := startBg(t, false, "setpriv", "--reuid="+b.user, "--regid="+b.user, "--init-groups", "sleep", "300")
	vpid := strconv.Itoa(victim.Process.Pid)
	for _, tc := range []struct{ name, path, want string }{
		{"StateFile", stateFile, "EACCES"},
		{"OpencodeJSON", filepath.Join(private, "opencode.json"), "EACCES"},
		{"SetupRecord", filepath.Join(private, "last-setup.json"), "EACCES"},
		{"ProcessCmdline", "/proc/" + vpid + "/cmdline", "ENOENT"},
		{"ProcessEnviron", "/proc/" + vpid + "/environ", "ENOENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.probe("read", tc.path); got != tc.want {
				t.Errorf("instance a reads %s: %q, want %q", tc.path, got, tc.want)
			}
			if got := bare(t, "read", tc.path); got != "ok" {
				t.Errorf("bare read %s = %q, want ok (the twin)", tc.path, got)
			}
		})
	}
	// A socket b serves in its own state dir: a's connect goes through the
	// gate, which allows only a's own directories and its allow-list.
	sock := filepath.Join(b.stateDir, "tmp", "b.sock")
	startBg(t, true, probeBin, "serve-unix", sock, "b")
	os.Chmod(filepath.Join(b.stateDir, "tmp"), 0o755)
	os.Chmod(sock, 0o777)
	if got := a.probe("connect-unix", sock); got != "EACCES" {
		t.Errorf("instance a connects to b's socket: %q, want EACCES", got)
	}
	if got := bare(t, "connect-unix", sock); got != "ok" {
		t.Errorf("bare connect to b's socket = %q, want ok (the twin)", got)
	}
}

// TestSupervisorDeathNeverLetsAConnectThrough: the sandboxed process
// connects to a denied socket in a tight loop while the supervisor is
// killed with SIGKILL. A notification without a listener fails (ENOSYS), so
// no connect may ever reach the server, and the process must die with its
// supervisor (PR_SET_PDEATHSIG). The twin: the same loop outside the
// sandbox reaches the server.
func TestSupervisorDeathNeverLetsAConnectThrough(t *testing.T) {
	si := newSandboxInstance(t, "death", nil)
	sock := filepath.Join(si.outside, "denied.sock")
	accepted := testkit.ServeUnix(t, sock)
	cmd := exec.Command(launcherBin, "run", "--config", si.specPath, "--", probeBin, "connect-forever", sock)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	for i := 0; i < 100 && !probeRunning(sock); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !probeRunning(sock) {
		t.Fatal("the sandboxed connect loop never started")
	}
	time.Sleep(300 * time.Millisecond) // let it loop through the gate
	cmd.Process.Kill()                 // the launcher we started: the supervisor
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for probeRunning(sock) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if probeRunning(sock) {
		t.Errorf("the sandboxed process outlived its supervisor")
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the denied server accepted %d connections around the supervisor's death", n)
	}
	// The twin: the same loop, bare, for a moment.
	twin := startBg(t, false, probeBin, "connect-forever", sock)
	time.Sleep(200 * time.Millisecond)
	twin.Process.Kill()
	if accepted.Load() == 0 {
		t.Errorf("the bare twin never reached the server: the test cannot tell a denial")
	}
}

// probeRunning reports whether a connect-forever probe for sock still runs.
func probeRunning(sock string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), "connect-forever\x00"+sock) {
			return true
		}
	}
	return false
}
