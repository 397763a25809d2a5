//go:build linux

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

	"github.com/ocnix/ocnix/internal/testkit"
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
	// Inside, the server is pid 2 (the guard is 1) and its parent, the
	// supervisor, is outside the namespace: getppid(2) answers 0.
	if got := si.probe("getpid"); got != "ok 2 0" {
		t.Errorf("pid and parent pid inside = %q, want \"ok 2 0\"", got)
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
		s := si.startWith(nil, "--", "/bin/sh", "-c", script(dir)+fmt.Sprintf("exec %s pause %s/server\n", probeBin, dir))
		server := waitPid(t, filepath.Join(dir, "server"))
		for _, j := range jobs {
			waitPid(t, filepath.Join(dir, j))
		}
		checkGuard(t, server, s.cmd.Process.Pid)
		s.cmd.Process.Kill() // the launcher we started: the supervisor
		<-s.done
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

// checkGuard: the server is pid 2 of a PID namespace of its own and a child
// of the supervisor, and the namespace's pid 1 is a root-owned guard, also
// the supervisor's child.
func checkGuard(t *testing.T, server, supervisor int) {
	t.Helper()
	st := procStatus(t, server)
	if f := strings.Fields(st["NSpid"]); len(f) != 2 || f[1] != "2" {
		t.Errorf("server NSpid = %q, want its host pid and 2", st["NSpid"])
	}
	if st["PPid"] != strconv.Itoa(supervisor) {
		t.Errorf("server's parent = %s, want the supervisor %d", st["PPid"], supervisor)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", server))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range children(t, supervisor) {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); l != ns || p == server {
			continue
		}
		gst := procStatus(t, p)
		if f := strings.Fields(gst["NSpid"]); len(f) != 2 || f[1] != "1" {
			t.Errorf("guard NSpid = %q, want its host pid and 1", gst["NSpid"])
		}
		if f := strings.Fields(gst["Uid"]); len(f) == 0 || f[0] != "0" {
			t.Errorf("guard Uid = %q, want root", gst["Uid"])
		}
		return
	}
	t.Errorf("no child of the supervisor %d in the server's PID namespace %s besides the server", supervisor, ns)
}

// children lists pid's children (of every thread).
func children(t *testing.T, pid int) []int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(s)
			out = append(out, n)
		}
	}
	return out
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

// waitPid waits for a pid file a probe wrote (its pidID) and returns the
// host's pid of that process, 0 when it is gone.
func waitPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return testkit.MustHostPid(t, string(b))
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
			if pids[j] != 0 && alive(pids[j]) && isProbe(pids[j]) {
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

// TestPIDNamespaceOwnProc: on cd2d2b4 the sandbox had a PID namespace of its
// own but /proc was still the launcher's, of the host's namespace: `$!` and
// getpid() were the sandbox's pids while ps and pgrep listed host pids,
// `kill $(pgrep …)` hit nothing (ESRCH) and /proc/$$ did not exist (psutil
// and the like look themselves up there). The guard now mounts the
// namespace's own proc: every tool agrees on one pid, pkill and kill of a
// pid read from /proc work, and ps lists only the sandbox's processes. The
// guard (pid 1, root) is hidden by hidepid=invisible like any process of
// another user.
func TestPIDNamespaceOwnProc(t *testing.T) {
	si := newSandboxInstance(t, "ownproc", nil)
	script := `
/usr/bin/sleep 300 & p=$!
/usr/bin/sleep 301 & q=$!
echo "bg=$p"
echo "self=$$"
[ -r /proc/$$/status ] && echo "selfstatus=ok"
[ "$(/usr/bin/readlink /proc/self/ns/pid)" = "$(/usr/bin/readlink /proc/$$/ns/pid)" ] && echo "selfns=ok"
[ -e /proc/1 ] || echo "init=hidden"
echo "pgrep=$(/usr/bin/pgrep -f '^/usr/bin/sleep 300')"
echo "ps=$(/usr/bin/ps -eo pid=,uid=,comm= | /usr/bin/tr -s ' ' | /usr/bin/tr '\n' ';')"
/usr/bin/pkill -f '^/usr/bin/sleep 300'; echo "pkill=$?"
wait $p; echo "waitp=$?"
# kill by a pid read from /proc, as a pidfile written from there would be
for d in /proc/[0-9]*; do
	[ "$(/usr/bin/cat $d/cmdline 2>/dev/null | /usr/bin/tr '\0' ' ')" = "/usr/bin/sleep 301 " ] && kill ${d#/proc/}
done
wait $q; echo "waitq=$?"
`
	out, errs, code := si.sandboxed("/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("run exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	t.Logf("inside:\n%s", out)
	for k, want := range map[string]string{
		"self":       "2",
		"selfstatus": "ok",
		"selfns":     "ok",
		"init":       "hidden",
		"pgrep":      got["bg"],
		"pkill":      "0",
		"waitp":      "143", // SIGTERM
		"waitq":      "143",
	} {
		if got[k] != want || want == "" {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	// ps lists the sandbox's processes only: the shell, the two sleeps
	// and the pipeline's own, all of the instance user, all by small
	// pids of the new namespace; not the guard and nothing of the host.
	u, err := user.Lookup(si.user)
	if err != nil {
		t.Fatal(err)
	}
	bg, _ := strconv.Atoi(got["bg"])
	seen := map[int]bool{}
	for _, row := range strings.Split(strings.Trim(got["ps"], ";"), ";") {
		f := strings.Fields(row)
		if len(f) != 3 {
			t.Errorf("ps row %q", row)
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		seen[pid] = true
		if pid < 2 || pid > bg+20 || f[1] != u.Uid {
			t.Errorf("ps lists %q: not one of the sandbox's processes (pids 2..%d of uid %s)", row, bg+20, u.Uid)
		}
		switch f[2] {
		case "sh", "sleep", "ps", "tr":
		default:
			t.Errorf("ps lists %q: not one of the sandbox's processes", row)
		}
	}
	if !seen[2] || !seen[bg] {
		t.Errorf("ps = %q, want the shell (2) and the background sleep (%d) among them", got["ps"], bg)
	}
}
