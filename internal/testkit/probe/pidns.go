//go:build linux

package probe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pidnsVerbs: what a process can do to another by pid (the calls that check
// only the uid), and pids as the test outside sees them.
var pidnsVerbs = map[string]Verb{
	// pidop OP PID applies OP to PID; PID "child" starts /bin/sleep 60 as
	// a child first (the positive twin inside the sandbox) and kills it
	// afterwards.
	"pidop": func(a []string) (string, error) {
		op, ok := pidOps[a[0]]
		if !ok {
			return "", fmt.Errorf("pidop: unknown op %q", a[0])
		}
		if a[1] != "child" {
			return "", op(atoi(a[1]))
		}
		c := exec.Command("/bin/sleep", "60")
		if err := c.Start(); err != nil {
			return "", err
		}
		defer func() { c.Process.Kill(); c.Wait() }()
		return "", op(c.Process.Pid)
	},
	// tgkill-parent sends signal 0 with tgkill(2) to every thread of the
	// parent (the supervisor, when the probe is the server): the kill(2)
	// of the process as a whole is refused by Landlock's signal scope, but
	// a thread in the probe's own domain would take a tgkill. ok when some
	// thread took it (the detail names them), else the errno of the last.
	"tgkill-parent": func([]string) (string, error) {
		ppid := os.Getppid()
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", ppid))
		if err != nil {
			return "", err
		}
		var took []string
		var last error = unix.ESRCH
		for _, t := range tasks {
			tid := atoi(t.Name())
			if last = unix.Tgkill(ppid, tid, 0); last == nil {
				took = append(took, t.Name())
			}
		}
		if len(took) > 0 {
			return fmt.Sprintf("%d of %d threads: %s", len(took), len(tasks), strings.Join(took, ",")), nil
		}
		return "", last
	},
	// tgkill-self sends signal 0 to its own thread (the twin).
	"tgkill-self": func([]string) (string, error) {
		return "", unix.Tgkill(os.Getpid(), unix.Gettid(), 0)
	},
	// getpid reports "PID PPID" as this process sees them.
	"getpid": func([]string) (string, error) {
		return fmt.Sprintf("%d %d", os.Getpid(), os.Getppid()), nil
	},
}

// pidOps are the calls that a red team used on same-uid processes outside
// the sandbox. Each is harmless to a sleeping process except prlimit, which
// is the attack itself (RLIMIT_CPU of 1 s kills it once it has used 1 s).
var pidOps = map[string]func(pid int) error{
	"kill": func(pid int) error { return unix.Kill(pid, unix.SIGCONT) },
	"prlimit": func(pid int) error {
		var old unix.Rlimit
		if err := unix.Prlimit(pid, unix.RLIMIT_CPU, nil, &old); err != nil {
			return err
		}
		return unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: 1, Max: old.Max}, nil)
	},
	"setpriority": func(pid int) error { return unix.Setpriority(unix.PRIO_PROCESS, pid, 19) },
	"affinity": func(pid int) error {
		var set unix.CPUSet
		set.Set(0)
		return unix.SchedSetaffinity(pid, &set)
	},
	"scheduler": func(pid int) error {
		// SCHED_IDLE needs no privilege for one's own uid.
		var param struct{ prio int32 }
		return rawErr(unix.Syscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(pid), 5 /* SCHED_IDLE */, uintptr(unsafe.Pointer(&param))))
	},
	"ioprio": func(pid int) error {
		const whoProcess, classIdle = 1, 3
		return rawErr(unix.Syscall(unix.SYS_IOPRIO_SET, whoProcess, uintptr(pid), classIdle<<13))
	},
}

// pidID names pid (of this process's PID namespace) for the test outside:
// "NSPIDS@INO", the NSpid line of the pid as the PID namespace of /proc sees
// it (the sandbox's own proc: one pid; a proc of an ancestor namespace:
// that namespace's pid first) and the inode of this process's PID
// namespace. The test translates it into a host pid (e2e hostPidOf); from
// inside, with the sandbox's own /proc, nothing tells the host's pid.
func pidID(pid int) (string, error) {
	ns, err := os.Readlink("/proc/self/ns/pid") // "pid:[INO]"
	if err != nil {
		return "", err
	}
	ino := strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	path := "/proc/self/status"
	if pid != os.Getpid() {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return "", fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
		defer unix.Close(fd)
		path = fmt.Sprintf("/proc/self/fdinfo/%d", fd)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			return strings.Join(strings.Fields(v), " ") + "@" + ino, nil
		}
	}
	return "", errors.New("no NSpid: in " + path)
}

// writePidID writes pidID(pid) to path.
func writePidID(path string, pid int) error {
	id, err := pidID(pid)
	if err != nil {
		return err
	}
	// Written to a temporary name and renamed, so that a reader never sees
	// half an id.
	tmp := fmt.Sprintf("%s.%d.%d", path, pid, time.Now().UnixNano())
	if err := os.WriteFile(tmp, []byte(id), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
