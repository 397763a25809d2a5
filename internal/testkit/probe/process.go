//go:build linux

package probe

import (
	"fmt"
	"os"
	"os/exec"
	ossignal "os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// processVerbs: the target program's identity, environment, descriptors,
// exit and signals, and the seccomp checks no other group has. They report
// errors only (errOnly).
var processVerbs = map[string]Verb{
	"chroot": errOnly(func(a []string) error { return unix.Chroot(a[0]) }),
	// supervisor-mem opens the memory of every thread of the parent
	// (the supervisor); nil if any opened.
	"supervisor-mem": errOnly(func([]string) error {
		ppid := os.Getppid()
		tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", ppid))
		if err != nil {
			return err
		}
		var last error = unix.ESRCH
		for _, t := range tids {
			f, err := os.Open(fmt.Sprintf("/proc/%d/task/%s/mem", ppid, t.Name()))
			if err == nil {
				f.Close()
				return nil
			}
			last = err
		}
		return last
	}),
	"kill-own-child": errOnly(func(a []string) error {
		c := exec.Command(a[0], "60")
		if err := c.Start(); err != nil {
			return err
		}
		defer c.Wait()
		return c.Process.Signal(unix.SIGKILL)
	}),
	// socket FAMILY TYPE PROTO and socketpair FAMILY TYPE take numbers or
	// names joined by "|" (AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC), so that tests
	// built for other systems can spell Linux's constants.
	"socket": errOnly(func(a []string) error {
		fd, err := unix.Socket(sockArg(a[0]), sockArg(a[1]), sockArg(a[2]))
		if err == nil {
			unix.Close(fd)
		}
		return err
	}),
	"socketpair": errOnly(func(a []string) error {
		fds, err := unix.Socketpair(sockArg(a[0]), sockArg(a[1]), 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return err
	}),
	"personality": errOnly(func(a []string) error {
		v, err := strconv.ParseUint(a[0], 0, 64)
		if err != nil {
			return err
		}
		return rawErr(unix.Syscall(unix.SYS_PERSONALITY, uintptr(v), 0, 0))
	}),
	"x32-getpid": errOnly(func([]string) error {
		return rawErr(unix.Syscall(0x40000000|unix.SYS_GETPID, 0, 0, 0))
	}),
	// pty opens a pseudo-terminal pair and uses terminal ioctls on
	// both ends, as opencode's terminal feature (bun-pty) does.
	"pty": errOnly(func([]string) error {
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open ptmx: %w", err)
		}
		defer unix.Close(m)
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlockpt: %w", err)
		}
		n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("ptsname: %w", err)
		}
		sfd, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open pts: %w", err)
		}
		defer unix.Close(sfd)
		if _, err := unix.IoctlGetTermios(sfd, unix.TCGETS); err != nil {
			return fmt.Errorf("tcgetattr: %w", err)
		}
		return unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80})
	}),
	// sh runs a shell script; a non-zero exit is reported as EIO.
	"sh": errOnly(func(a []string) error {
		c := exec.Command("/bin/sh", "-c", a[0])
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "probe sh: %v\n", err)
			return unix.EIO
		}
		return nil
	}),
	"exit": errOnly(func(a []string) error { os.Exit(atoi(a[0])); return nil }),
	// selfkill sends signal a[0] to its own process (as `kill $$` does) and
	// waits to die of it. Returning at once would race: the kernel hands a
	// process-directed signal to the main thread, the Go runtime's handler
	// re-raises it there, and meanwhile this goroutine's os.Exit(0) can end
	// the process first (measured on Debian's 6.12 under QEMU: exit 0 in 1
	// of 25 runs). Still alive after the wait is an error (ETIMEDOUT): the
	// signal was ignored, as it is by a PID 1 without a handler.
	"selfkill": errOnly(func(a []string) error {
		if err := unix.Kill(os.Getpid(), unix.SignalNum(a[0])); err != nil {
			return err
		}
		time.Sleep(10 * time.Second)
		fmt.Fprintf(os.Stderr, "probe selfkill: still alive 10s after %s\n", a[0])
		return unix.ETIMEDOUT
	}),
	// trap-term writes a[0] when ready, then exits 42 on SIGTERM.
	"trap-term": errOnly(func(a []string) error {
		c := make(chan os.Signal, 1)
		ossignal.Notify(c, unix.SIGTERM)
		if err := os.WriteFile(a[0], []byte("ready"), 0o644); err != nil {
			return err
		}
		<-c
		os.Exit(42)
		return nil
	}),
	// pause writes its pid (as pidID) to a[0] and waits to be killed.
	"pause": errOnly(func(a []string) error {
		if err := writePidID(a[0], os.Getpid()); err != nil {
			return err
		}
		select {}
	}),
	// grandchild starts a[1] 60 in its process group, writes its pid
	// (as pidID) to a[0] and exits without waiting for it.
	"grandchild": errOnly(func(a []string) error {
		c := exec.Command(a[1], "60")
		if err := c.Start(); err != nil {
			return err
		}
		return writePidID(a[0], c.Process.Pid)
	}),
	// fds fails if the target inherited a socket, pipe or seccomp fd
	// besides 0, 1 and 2. (The Go runtime of the probe itself opens
	// cgroup files, an epoll and an eventfd.)
	"fds": errOnly(func([]string) error {
		d, err := os.Open("/proc/self/fd")
		if err != nil {
			return err
		}
		defer d.Close()
		names, err := d.Readdirnames(-1)
		if err != nil {
			return err
		}
		var leaked []string
		for _, n := range names {
			if n == "0" || n == "1" || n == "2" || n == strconv.Itoa(int(d.Fd())) {
				continue
			}
			target, _ := os.Readlink("/proc/self/fd/" + n)
			for _, bad := range []string{"socket:", "pipe:", "anon_inode:seccomp", "anon_inode:[pidfd]"} {
				if strings.HasPrefix(target, bad) {
					leaked = append(leaked, n+" -> "+target)
				}
			}
		}
		if len(leaked) > 0 {
			return fmt.Errorf("inherited fds: %v", leaked)
		}
		return nil
	}),
	"identity": errOnly(func(a []string) error { return checkIdentity(atoi(a[0]), atoi(a[1]), a[2]) }),
	"env":      errOnly(func(a []string) error { return checkEnv(a) }),
}

var sockNames = map[string]int{
	"AF_UNIX": unix.AF_UNIX, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6,
	"AF_PACKET": unix.AF_PACKET, "AF_NETLINK": unix.AF_NETLINK, "AF_VSOCK": unix.AF_VSOCK, "AF_ALG": unix.AF_ALG,
	"SOCK_STREAM": unix.SOCK_STREAM, "SOCK_DGRAM": unix.SOCK_DGRAM, "SOCK_RAW": unix.SOCK_RAW,
	"SOCK_SEQPACKET": unix.SOCK_SEQPACKET, "SOCK_CLOEXEC": unix.SOCK_CLOEXEC, "SOCK_NONBLOCK": unix.SOCK_NONBLOCK,
	"IPPROTO_ICMP": unix.IPPROTO_ICMP, "IPPROTO_MPTCP": unix.IPPROTO_MPTCP,
}

// sockArg is a number, or names of sockNames joined by "|".
func sockArg(s string) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	v := 0
	for _, name := range strings.Split(s, "|") {
		n, ok := sockNames[name]
		if !ok {
			panic("probe: unknown socket constant " + name)
		}
		v |= n
	}
	return v
}

// errOnly makes a verb of a check that reports only an error.
func errOnly(f func([]string) error) Verb {
	return func(a []string) (string, error) { return "", f(a) }
}

func rawErr(_, _ uintptr, e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// checkIdentity verifies uid, gid, groups, capabilities, no_new_privs
// and seccomp mode from /proc/self/status.
func checkIdentity(uid, gid int, groups string) error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	want := map[string]string{
		"Uid":    fmt.Sprintf("%d\t%d\t%d\t%d", uid, uid, uid, uid),
		"Gid":    fmt.Sprintf("%d\t%d\t%d\t%d", gid, gid, gid, gid),
		"Groups": groups,
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
		"CapEff": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2",
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if w, found := want[k]; ok && found {
			if got := strings.TrimSpace(v); got != w {
				return fmt.Errorf("%s: got %q, want %q", k, got, w)
			}
			delete(want, k)
		}
	}
	if len(want) != 0 {
		return fmt.Errorf("missing status fields %v", want)
	}
	return nil
}

// checkEnv verifies the target's environment is exactly a.
func checkEnv(want []string) error {
	got := os.Environ()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		return fmt.Errorf("environment %q, want %q", got, want)
	}
	return nil
}
