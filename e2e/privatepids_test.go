//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// unitPIDNamespace starts the launcher the way systemd's PrivatePIDs= does (the NixOS
// module sets it on systemd ≥ 257): as pid 1 of a new PID namespace with its own /proc,
// already the instance user without capabilities. It returns the command (unshare, whose
// child is that pid 1) and its output; the test kills it by pid when it ends.
func unitPIDNamespace(t *testing.T, si *sandboxInstance, args ...string) *unitRun {
	t.Helper()
	argv := append([]string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
		"setpriv", "--reuid=" + si.user, "--regid=" + si.user, "--init-groups", "--no-new-privs",
		"--inh-caps=-all", "--bounding-set=-all", launcherBin}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	r := &unitRun{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &r.out, &r.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // --kill-child: the namespace's pid 1 gets SIGKILL
		<-r.done
	})
	return r
}

type unitRun struct {
	cmd       *exec.Cmd
	out, errb strings.Builder // read only after done
	done      chan struct{}   // closed when Wait returned
}

// wait waits for the run to end and returns its exit status, or fails t after d.
func (r *unitRun) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%v did not end within %v", r.cmd.Args, d)
		return -1
	}
}

// nsInit is the pid 1 of the PID namespace unshare (pid) made: its only child.
func nsInit(t *testing.T, unsharePid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c := children(t, unsharePid); len(c) == 1 {
			return c[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("unshare (pid %d) has no child", unsharePid)
	return 0
}

// zombiesIn lists the zombies whose PID namespace is the one of pid.
func zombiesIn(t *testing.T, pid int) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var z []int
	for _, d := range dirs {
		if l, _ := os.Readlink(d + "/ns/pid"); l != ns {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) S ...: the state follows the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
			n, _ := strconv.Atoi(filepath.Base(d))
			z = append(z, n)
		}
	}
	return z
}

// TestUnitPIDNamespace: under systemd the launcher runs as the instance user and cannot
// make a PID namespace; the unit's PrivatePIDs= makes one, with the launcher as its pid 1.
// pid 1 inherits every orphan: the agent's background jobs exit into zombies that only pid
// 1 can reap, and each holds a pid (and a TasksMax slot) until then. The launcher as pid 1
// now stays a small init that reaps them and runs the launcher proper as its child. Checked
// here: no zombie is left of 80 orphans, processes outside are out of reach (ESRCH; the
// twin inside answers ok), SIGTERM to pid 1 (what systemd sends) reaches the server and
// comes back as its status, every background job dies with the namespace, and explain,
// run in such a namespace, calls the PID namespace enforced.
func TestUnitPIDNamespace(t *testing.T) {
	si := newSandboxInstance(t, "privpids", nil)
	victim := startAsUser(t, si.user, "/bin/sleep", "300")
	dir := jobDir(t, si)
	p := probeBin
	script := fmt.Sprintf(`d=%[1]s
i=0
while [ $i -lt 40 ]; do setsid /bin/sh -c '/bin/true & /bin/true &'; i=$((i+1)); done
setsid /bin/sh -c '%[2]s pause %[1]s/job >/dev/null 2>&1 &'
while [ ! -s $d/job ]; do sleep 0.02; done
for op in kill prlimit setpriority affinity; do
	echo "$op=$(%[2]s pidop $op %[3]d)"
	echo "$op-child=$(%[2]s pidop $op child)"
done > $d/ops
echo "getpid=$(%[2]s getpid)" >> $d/ops
exec %[2]s pause $d/server
`, dir, p, victim)
	r := unitPIDNamespace(t, si, "run", "--config", si.specPath, "--", "/bin/sh", "-c", script)
	init := nsInit(t, r.cmd.Process.Pid)
	server := waitPid(t, filepath.Join(dir, "server"))
	job := waitPid(t, filepath.Join(dir, "job"))
	if server == 0 || job == 0 {
		t.Fatalf("server %d, job %d: not found", server, job)
	}

	st := procStatus(t, init)
	if f := strings.Fields(st["NSpid"]); len(f) != 2 || f[1] != "1" {
		t.Fatalf("premise: unshare's child has NSpid %q, want pid 1 of a namespace", st["NSpid"])
	}
	// The supervisor is the init's child (not pid 2: the init's threads take pids too),
	// and the server's parent.
	sst := procStatus(t, server)
	sup, _ := strconv.Atoi(sst["PPid"])
	if pst := procStatus(t, sup); pst["PPid"] != strconv.Itoa(init) {
		t.Errorf("the server's parent %d (NSpid %q) is not the init's (%d) child but %s's", sup, pst["NSpid"], init, pst["PPid"])
	}
	if st["Uid"] == "" || strings.Fields(st["Uid"])[0] == "0" {
		t.Errorf("the init runs as %q, want the instance user", st["Uid"])
	}

	var z []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if z = zombiesIn(t, init); len(z) == 0 {
			break
		}
	}
	if len(z) != 0 {
		t.Errorf("%d zombies left in the namespace (pids %v): the init does not reap orphans", len(z), z)
	}

	ops, err := os.ReadFile(filepath.Join(dir, "ops"))
	if err != nil {
		t.Fatalf("no ops: %v", err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(ops)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	for _, op := range []string{"kill", "prlimit", "setpriority", "affinity"} {
		if got[op] != "ESRCH" {
			t.Errorf("%s on a same-user process outside = %q, want ESRCH", op, got[op])
		}
		if got[op+"-child"] != "ok" {
			t.Errorf("%s on a child inside = %q, want ok (the positive twin)", op, got[op+"-child"])
		}
	}
	if !alive(victim) {
		t.Errorf("the process outside (pid %d) died", victim)
	}

	// systemd stops the unit with SIGTERM to its main process, the init.
	if err := unix.Kill(init, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, 20*time.Second); code != 143 {
		t.Errorf("exit status %d after SIGTERM, want 143 (the server's, through the init)\nstderr: %s", code, &r.errb)
	}
	checkGone(t, dir, []string{"job", "server"})

	t.Run("ExitStatus", func(t *testing.T) {
		e := unitPIDNamespace(t, si, "run", "--config", si.specPath, "--", "/bin/sh", "-c", "exit 7")
		if code := e.wait(t, 30*time.Second); code != 7 {
			t.Errorf("exit status %d through the init, want 7\nstderr: %s", code, &e.errb)
		}
	})

	// explain in the same situation: the namespace is held.
	t.Run("Explain", func(t *testing.T) {
		e := unitPIDNamespace(t, si, "explain", "--config", si.specPath)
		if code := e.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("explain: exit %d\nstderr: %s", code, &e.errb)
		}
		line := ""
		for _, l := range strings.Split(e.out.String(), "\n") {
			if strings.Contains(l, "pid namespace:") {
				line = l
			}
		}
		if !strings.Contains(strings.ToLower(line), "enforced  pid namespace") || !strings.Contains(line, "PrivatePIDs=") {
			t.Errorf("explain's pid namespace line = %q, want ENFORCED by the unit's PrivatePIDs=", line)
		}
	})
}

// TestServerCannotSignalTheSupervisor: red-team pass 3, F1. When the launcher runs as the
// instance user (systemd User=), the thread that confines itself and forks the server has
// the server's uid and Landlock domain; kill(2) of the supervisor was refused, but
// tgkill(2) of that one thread was not, so the server could SIGSTOP the supervisor (every
// gated connect hung, and the unit's init with it) or SIGKILL it. The server now gets a
// domain of its own, nested in the thread's, that scopes signals (Landlock ABI 6).
func TestServerCannotSignalTheSupervisor(t *testing.T) {
	if abi, _ := ll.LandlockGetABIVersion(); abi < 6 {
		t.Skipf("SKIPPED %s: Landlock ABI %d has no signal scope (6); the supervisor's thread stays signallable there, as README says", t.Name(), abi)
	}
	si := newSandboxInstance(t, "sigsup", nil)
	check := func(t *testing.T, run func(args ...string) (string, string, int)) {
		out, errs, code := run("run", "--config", si.specPath, "--", probeBin, "tgkill-parent")
		if code != 0 || out != "EPERM" {
			t.Errorf("tgkill of the supervisor's threads from the server = %q (exit %d), want EPERM for every thread\nstderr: %s", out, code, errs)
		}
		out, errs, code = run("run", "--config", si.specPath, "--", probeBin, "tgkill-self")
		if code != 0 || out != "ok" {
			t.Errorf("tgkill of its own thread = %q (exit %d), want ok (the twin)\nstderr: %s", out, code, errs)
		}
	}
	t.Run("AsInstanceUser", func(t *testing.T) {
		check(t, func(args ...string) (string, string, int) { return si.asInstanceUser("", args...) })
	})
	t.Run("InTheUnitsPIDNamespace", func(t *testing.T) {
		check(t, func(args ...string) (string, string, int) {
			r := unitPIDNamespace(t, si, args...)
			code := r.wait(t, time.Minute)
			return strings.TrimSpace(r.out.String()), r.errb.String(), code
		})
	})
	// As root the supervisor is root and outside the server's PID namespace: nothing to try.
}

// TestStoppedServerStillStops: red-team pass 3, F4. A server that stopped itself (SIGSTOP,
// here `kill -STOP $$` of the shell) kept its forwarded SIGTERM pending for good: the
// supervisor forwarded SIGTERM but never SIGCONT, so `run` (and under systemd the unit,
// until TimeoutStopSec) did not end. The supervisor now follows SIGTERM with SIGCONT, as
// systemd does. Twin: a running server ends on SIGTERM as before.
func TestStoppedServerStillStops(t *testing.T) {
	si := newSandboxInstance(t, "stopped", nil)
	for _, tc := range []struct{ name, script string }{
		{"Stopped", "kill -STOP $$; exec /usr/bin/sleep 300"},
		{"Running", "exec /usr/bin/sleep 300"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := si.startWith(nil, "--", "/bin/sh", "-c", tc.script)
			// Wait until the server (the supervisor's child in the sandbox's
			// PID namespace, not the guard) is in the state the case wants.
			want := map[string]string{"Stopped": "T", "Running": "S"}[tc.name]
			deadline := time.Now().Add(10 * time.Second)
			for state := ""; state != want; {
				if time.Now().After(deadline) {
					t.Fatalf("the server never reached state %s (last %q)", want, state)
				}
				time.Sleep(20 * time.Millisecond)
				for _, c := range children(t, s.cmd.Process.Pid) {
					if st := procStatus(t, c); strings.Fields(st["NSpid"])[len(strings.Fields(st["NSpid"]))-1] == "2" {
						state = strings.Fields(st["State"])[0]
					}
				}
			}
			// SIGTERM, then SIGKILL if run has not ended within 10 s.
			if code := s.stop(10 * time.Second); code != 143 {
				t.Errorf("exit status %d after SIGTERM with the server in state %s, want 143 (the server's SIGTERM)", code, want)
			}
		})
	}
}
