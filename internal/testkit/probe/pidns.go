//go:build linux

package probe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
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

// hostPid is pid (of this process's PID namespace) as the pid namespace of
// /proc sees it: the launcher's /proc belongs to the host's namespace, so a
// pid written there is one the test outside can wait for and kill.
func hostPid(pid int) (int, error) {
	if pid == os.Getpid() {
		s, err := os.Readlink("/proc/self")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(s)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no Pid: in the pidfd's fdinfo")
}

// writeHostPid writes pid, as hostPid gives it, to path.
func writeHostPid(path string, pid int) error {
	hp, err := hostPid(pid)
	if err != nil {
		return err
	}
	// Written to a temporary name and renamed, so that a reader never sees
	// half a number.
	tmp := fmt.Sprintf("%s.%d.%d", path, pid, time.Now().UnixNano())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(hp)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
