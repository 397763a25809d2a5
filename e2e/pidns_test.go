package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPIDNamespaceHidesSameUserProcesses: red team hole 3. prlimit64,
// setpriority, sched_setaffinity, sched_setscheduler and ioprio_set check
// only the uid, so on 9a69ee7 the sandbox could re-limit (RLIMIT_CPU killed
// it), slow down and find by pid a process of the instance user outside the
// sandbox. `run` as root now gives the sandbox a PID namespace of its own:
// every call finds no such process, and works on a process inside (the twin).
func TestPIDNamespaceHidesSameUserProcesses(t *testing.T) {
	si := newSandboxInstance(t, "pidns", nil)
	victim := startAsUser(t, si.user, "/bin/sleep", "300")
	vpid := strconv.Itoa(victim)
	// Read from /proc: prlimit(2) on another uid needs CAP_SYS_RESOURCE,
	// which root may lack (this CI's does).
	before := cpuLimit(t, victim)
	for _, op := range []string{"kill", "prlimit", "setpriority", "affinity", "scheduler", "ioprio"} {
		t.Run(op, func(t *testing.T) {
			if got := si.probe("pidop", op, vpid); got != "ESRCH" {
				t.Errorf("%s on a same-user process outside the sandbox = %q, want ESRCH", op, got)
			}
			if got := si.probe("pidop", op, "child"); got != "ok" {
				t.Errorf("%s on the sandbox's own child = %q, want ok (the positive twin)", op, got)
			}
		})
	}
	if !alive(victim) {
		t.Fatalf("the process outside (pid %d) died", victim)
	}
	if after := cpuLimit(t, victim); after != before {
		t.Errorf("RLIMIT_CPU of the process outside changed from %q to %q", before, after)
	}
	if nice, err := unix.Getpriority(unix.PRIO_PROCESS, victim); err != nil || nice != 20 {
		// getpriority(2) returns 20-nice: 20 is nice 0.
		t.Errorf("priority of the process outside = %d (%v), want nice 0", 20-nice, err)
	}
	// Inside, the server is pid 2 and its parent the guard, pid 1.
	if got := si.probe("getpid"); got != "ok 2 1" {
		t.Errorf("pid and parent pid inside = %q, want \"ok 2 1\"", got)
	}
}

// TestBackgroundJobsDieWithRun: red team hole 7. opencode starts every shell
// command in a session of its own (setsid), so on 9a69ee7 a background job
// (`cmd &`, `nohup cmd &`, `setsid cmd &`) survived the process-group kill
// at the end of `run`, and everything survived a killed supervisor. Now the
// PID namespace ends them all, both ways.
func TestBackgroundJobsDieWithRun(t *testing.T) {
	si := newSandboxInstance(t, "bgjobs", nil)
	jobs := []string{"amp", "nohup", "setsid"}
	// Each job as opencode starts a shell command: in its own session.
	script := func(dir string) string {
		p := probeBin
		return fmt.Sprintf(`d=%s
setsid /bin/sh -c '%s pause %s/amp >/dev/null 2>&1 &'
setsid /bin/sh -c 'nohup %s pause %s/nohup >/dev/null 2>&1 &'
setsid %s pause %s/setsid >/dev/null 2>&1 &
for f in amp nohup setsid; do while [ ! -s $d/$f ]; do sleep 0.02; done; done
`, dir, p, dir, p, dir, p, dir)
	}

	t.Run("RunReturns", func(t *testing.T) {
		dir := jobDir(t, si)
		out, errs, code := si.sandboxed("/bin/sh", "-c", script(dir))
		if code != 0 {
			t.Fatalf("run exit %d\nstdout: %s\nstderr: %s", code, out, errs)
		}
		checkGone(t, dir, jobs)
	})

	t.Run("SupervisorKilled", func(t *testing.T) {
		dir := jobDir(t, si)
		cmd := exec.Command(launcherBin, "run", "--config", si.specPath, "--",
			"/bin/sh", "-c", script(dir)+fmt.Sprintf("exec %s pause %s/server\n", probeBin, dir))
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		server := waitPid(t, filepath.Join(dir, "server"))
		for _, j := range jobs {
			waitPid(t, filepath.Join(dir, j))
		}
		checkGuard(t, server, cmd.Process.Pid)
		cmd.Process.Kill() // the launcher we started: the supervisor
		<-done
		checkGone(t, dir, append(jobs, "server"))
	})
}

// cpuLimit is the "Max cpu time" line of /proc/PID/limits.
func cpuLimit(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max cpu time") {
			return line
		}
	}
	t.Fatalf("no Max cpu time in /proc/%d/limits", pid)
	return ""
}

// checkGuard: the server is pid 2 of a PID namespace of its own, and its
// parent is a root-owned guard whose parent is the supervisor.
func checkGuard(t *testing.T, server, supervisor int) {
	t.Helper()
	st := procStatus(t, server)
	if f := strings.Fields(st["NSpid"]); len(f) != 2 || f[1] != "2" {
		t.Errorf("server NSpid = %q, want its host pid and 2", st["NSpid"])
	}
	guard, _ := strconv.Atoi(st["PPid"])
	gst := procStatus(t, guard)
	if f := strings.Fields(gst["NSpid"]); len(f) != 2 || f[1] != "1" {
		t.Errorf("server's parent NSpid = %q, want its host pid and 1", gst["NSpid"])
	}
	if f := strings.Fields(gst["Uid"]); len(f) == 0 || f[0] != "0" {
		t.Errorf("guard Uid = %q, want root", gst["Uid"])
	}
	if gst["PPid"] != strconv.Itoa(supervisor) {
		t.Errorf("guard's parent = %s, want the supervisor %d", gst["PPid"], supervisor)
	}
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// jobDir is a directory the instance user may write its pid files to.
func jobDir(t *testing.T, si *sandboxInstance) string {
	t.Helper()
	d := filepath.Join(si.rw, "jobs-"+strings.ReplaceAll(t.Name(), "/", "-"))
	mustRun(t, "install", "-d", "-o", si.user, "-m", "0755", d)
	return d
}

// waitPid waits for a pid file a probe wrote (the host's pid, see the probe's
// hostPid) and returns it.
func waitPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			pid, err := strconv.Atoi(string(b))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
	return 0
}

// checkGone fails for every job whose process is still alive a moment
// later, and kills it: it is one the test started, by the pid it wrote.
func checkGone(t *testing.T, dir string, jobs []string) {
	t.Helper()
	pids := map[string]int{}
	for _, j := range jobs {
		pids[j] = waitPid(t, filepath.Join(dir, j))
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		var left []string
		for _, j := range jobs {
			if alive(pids[j]) && isProbe(pids[j]) {
				left = append(left, j)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, j := range left {
				t.Errorf("background job %q (pid %d) outlived the sandbox", j, pids[j])
				unix.Kill(pids[j], unix.SIGKILL)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isProbe: pid runs the probe (so a reused pid is never killed).
func isProbe(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.HasPrefix(string(b), probeBin+"\x00pause\x00")
}

// startAsUser starts argv as the named user outside any sandbox and kills it
// by pid when the test ends.
func startAsUser(t *testing.T, name string, argv ...string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c := exec.Command(argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	return c.Process.Pid
}
