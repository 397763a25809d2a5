package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

// supervisorExitRunError is the helper's exit code when Run fails.
const supervisorExitRunError = 250

type superviseJob struct {
	Plan Plan    `json:"plan"`
	Cmd  Command `json:"cmd"`
}

// runSupervisor is the helper process: Run, then exit with its code.
func runSupervisor(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return supervisorExitRunError
	}
	var job superviseJob
	if err := json.Unmarshal(b, &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return supervisorExitRunError
	}
	code, err := Run(context.Background(), job.Plan, job.Cmd, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return supervisorExitRunError
	}
	return code
}

func (f *fixture) command(in Input, args ...string) Command {
	return Command{
		Path: f.probe,
		Args: append([]string{f.probe}, args...),
		Env:  []string{probeEnv + "=1", "PATH=/usr/bin:/bin"},
		Dir:  in.Directory,
	}
}

// startSupervisor starts the helper (as cred, or root when nil) with
// its output in the returned buffer.
func (f *fixture) startSupervisor(t *testing.T, cred *syscall.Credential, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	caps := DetectCaps()
	// Built as the user that runs it, as the launcher does: only root
	// makes a PID namespace.
	caps.Root = cred == nil || cred.Uid == 0
	plan, err := Build(f.in, caps)
	must(t, err)
	return f.startPlan(t, plan, cred, args...)
}

func (f *fixture) startPlan(t *testing.T, plan Plan, cred *syscall.Credential, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	b, err := json.Marshal(superviseJob{Plan: plan, Cmd: f.command(f.in, args...)})
	must(t, err)
	job := filepath.Join(f.base, "job-"+randName(4)+".json")
	must(t, os.WriteFile(job, b, 0o644))
	c := exec.Command(f.probe)
	c.Env = []string{superviseEnv + "=" + job}
	out := &strings.Builder{}
	c.Stdout, c.Stderr = out, out
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// A surviving server would hold the output pipe open forever.
	c.WaitDelay = 2 * time.Second
	must(t, c.Start())
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	return c, out
}

func waitFile(t *testing.T, p string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return string(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", p)
	return ""
}

// waitGone waits until pid no longer exists or is a zombie (0: gone).
func waitGone(t *testing.T, pid int) error {
	t.Helper()
	if pid == 0 {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		// Field 3, after the parenthesised comm.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+2:]), "Z") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	unix.Kill(pid, unix.SIGKILL) // do not leave it behind
	return fmt.Errorf("process %d still alive", pid)
}

func TestRunExitStatus(t *testing.T) {
	f := newFixture(t)
	runCases(t, f, f.in, []probeCase{
		{name: "ExitCodePassesThrough", args: []string{"exit", "7"}, want: 7},
		{name: "SignalDeathIs128PlusSignal", args: []string{"selfkill", "SIGTERM"}, want: 128 + int(unix.SIGTERM)},
	})
}

func TestRunCancelSendsSIGTERM(t *testing.T) {
	f := newFixture(t)
	plan, err := Build(f.in, DetectCaps())
	must(t, err)
	ready := filepath.Join(f.project, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFile(t, ready)
		cancel()
	}()
	code, err := Run(ctx, plan, f.command(f.in, "trap-term", ready), nil)
	must(t, err)
	if code != 42 {
		t.Errorf("exit code %d, want 42 (the child's SIGTERM handler)", code)
	}
}

func TestSupervisorForwardsSIGTERM(t *testing.T) {
	f := newFixture(t)
	ready := filepath.Join(f.project, "ready")
	c, out := f.startSupervisor(t, nil, "trap-term", ready)
	waitFile(t, ready)
	must(t, c.Process.Signal(unix.SIGTERM))
	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("supervisor: %v, want exit 42 from the child's handler; output:\n%s", err, out)
	}
}

func TestSupervisorDeathKillsServer(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(f.project, "pid")
	c, _ := f.startSupervisor(t, nil, "pause", pidFile)
	pid := testkit.MustHostPid(t, waitFile(t, pidFile))
	if pid == 0 {
		t.Fatal("the server is not running")
	}
	must(t, c.Process.Kill())
	c.Wait()
	if err := waitGone(t, pid); err != nil {
		t.Errorf("server survived its supervisor (PR_SET_PDEATHSIG): %v", err)
	}
}

func TestRunKillsProcessGroupOnExit(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(f.project, "grandchild")
	if code := f.run(t, f.in, "grandchild", pidFile, "/bin/sleep"); code != 0 {
		t.Fatalf("probe exit %d (%s)", code, errnoName(code))
	}
	pid := testkit.MustHostPid(t, waitFile(t, pidFile))
	if err := waitGone(t, pid); err != nil {
		t.Errorf("grandchild in the server's process group survived: %v", err)
	}
}

func TestRunAsInstanceUser(t *testing.T) {
	f := newFixture(t)
	cred := &syscall.Credential{Uid: uint32(f.uid), Gid: uint32(f.gid), Groups: []uint32{uint32(f.gid)}}
	c, out := f.startSupervisor(t, cred, "identity", itoa(f.uid), itoa(f.gid), itoa(f.gid))
	if err := c.Wait(); err != nil {
		t.Errorf("Run as the instance user: %v; output:\n%s", err, out)
	}
}

// TestServerCannotReachSupervisorMemory: the thread that starts the
// server shares its Landlock domain, so Landlock no longer keeps the
// server out of the supervisor's memory when both run as the instance
// user (systemd User=); the supervisor makes itself non-dumpable.
func TestServerCannotReachSupervisorMemory(t *testing.T) {
	f := newFixture(t)
	cred := &syscall.Credential{Uid: uint32(f.uid), Gid: uint32(f.gid), Groups: []uint32{uint32(f.gid)}}
	c, out := f.startSupervisor(t, cred, "supervisor-mem")
	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || (ee.ExitCode() != int(unix.EACCES) && ee.ExitCode() != int(unix.EPERM)) {
		t.Errorf("server opening the supervisor's memory: %v, want EACCES or EPERM; output:\n%s", err, out)
	}
}

func TestRunAsOtherUserIsRefused(t *testing.T) {
	f := newFixture(t)
	other := newUser(t)
	uid, gid := other.UID, other.GID
	c, out := f.startSupervisor(t, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, "exit", "0")
	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != supervisorExitRunError {
		t.Fatalf("Run as another user: %v, want a refusal; output:\n%s", err, out)
	}
	want := fmt.Sprintf("instance %q: running as uid %d", f.in.Instance, uid)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), f.in.User) {
		t.Errorf("refusal does not name the instance, uid and user:\n%s", out)
	}
}

func TestRunMissingRequiredPathNamesIt(t *testing.T) {
	f := newFixture(t)
	in := f.in
	missing := filepath.Join(f.base, "no-such-dir")
	in.ReadOnlyPaths = append(in.ReadOnlyPaths, missing)
	plan, err := Build(in, DetectCaps())
	must(t, err)
	_, err = Run(context.Background(), plan, f.command(in, "exit", "0"), nil)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Run: %v; want an error naming %s", err, missing)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Run: %v; want it to wrap fs.ErrNotExist", err)
	}
}

func TestRunExecFailureIsReported(t *testing.T) {
	f := newFixture(t)
	plan, err := Build(f.in, DetectCaps())
	must(t, err)
	cmd := f.command(f.in)
	cmd.Path = filepath.Join(f.project, "no-such-binary")
	_, err = Run(context.Background(), plan, cmd, nil)
	if err == nil || !strings.Contains(err.Error(), "no-such-binary") {
		t.Errorf("Run with a missing binary: %v, want an exec error naming it", err)
	}
}

// TestRunDirectExecPath runs the Landlock ABI ≥ 9 path (confine the
// calling process, exec, no supervisor) on this kernel by taking the
// gate out of a plan built here. Only the unix-socket gate is missing;
// everything else must hold exactly as with the supervisor.
func TestRunDirectExecPath(t *testing.T) {
	f := newFixture(t)
	plan, err := Build(f.in, DetectCaps())
	must(t, err)
	plan.Gate.Mode = GateLandlock
	plan.PIDNamespace = false // as Build makes it for GateLandlock
	var rules []SyscallRule
	for _, r := range plan.Seccomp.Rules {
		if r.Action != ActionNotify {
			rules = append(rules, r)
		}
	}
	plan.Seccomp.Rules = rules
	for _, tc := range []probeCase{
		{name: "Identity", args: []string{"identity", itoa(f.uid), itoa(f.gid), itoa(f.gid)}, want: 0},
		{name: "NoInheritedFDs", args: []string{"fds"}, want: 0},
		{name: "WriteOutsideDenied", args: []string{"write", f.outside}, want: int(unix.EACCES)},
		{name: "WriteInDirectoryAllowed", args: []string{"write", filepath.Join(f.project, "direct")}, want: 0},
		{name: "UnshareDenied", args: []string{"unshare", "newuser"}, want: int(unix.EPERM)},
		{name: "ExitCode", args: []string{"exit", "9"}, want: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, out := f.startPlan(t, plan, nil, tc.args...)
			err := c.Wait()
			got := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				got = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("probe %v: got %d (%s), want %d (%s); output:\n%s", tc.args, got, errnoName(got), tc.want, errnoName(tc.want), out)
			}
		})
	}
}

// TestRunRefusesSymlinkBeneathOwnDir: the instance could replace a
// path beneath its own directory with a symlink, and the rule (added
// as root) would then follow it anywhere.
func TestRunRefusesSymlinkBeneathOwnDir(t *testing.T) {
	f := newFixture(t)
	must(t, os.Symlink(filepath.Dir(f.outside), filepath.Join(f.project, "escape")))
	tests := []struct {
		name   string
		mutate func(*Input)
	}{
		{name: "ReadWritePath", mutate: func(in *Input) { in.ReadWritePaths = append(in.ReadWritePaths, filepath.Join(f.project, "escape")) }},
		{name: "ExecPathThroughSymlinkedDir", mutate: func(in *Input) { in.ExecPaths = append(in.ExecPaths, filepath.Join(f.project, "escape", "secret.txt")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := f.in
			tc.mutate(&in)
			plan, err := Build(in, DetectCaps())
			must(t, err)
			_, err = Run(context.Background(), plan, f.command(in, "exit", "0"), nil)
			if err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Run: %v, want a refusal naming the symlink", err)
			}
		})
	}
}

// TestSymlinkOutsideOwnDirsIsFollowed: symlinks that only root can
// change (NixOS /run/current-system/sw, /etc entries) keep working.
func TestSymlinkOutsideOwnDirsIsFollowed(t *testing.T) {
	f := newFixture(t)
	link := filepath.Join(f.base, "ro-link")
	must(t, os.Symlink(f.ro, link))
	in := f.in
	in.ReadOnlyPaths = []string{link}
	runCases(t, f, in, []probeCase{
		{name: "ReadThroughRootOwnedSymlink", args: []string{"read", f.roFile}, want: 0},
	})
}
