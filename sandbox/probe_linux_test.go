package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe exit codes: 0 for success, the errno number for a syscall
// error, probeOther for anything else (details on stderr).
const probeOther = 200

// probes run inside the sandbox as the target program. Each does one
// thing and returns the error it got.
var probes = map[string]func(args []string) error{
	"write": func(a []string) error { return os.WriteFile(a[0], []byte("x"), 0o644) },
	"read": func(a []string) error {
		_, err := os.ReadFile(a[0])
		return err
	},
	"readdir": func(a []string) error {
		_, err := os.ReadDir(a[0])
		return err
	},
	"exec": func(a []string) error { return exec.Command(a[0]).Run() },
	"mount": func(a []string) error {
		return unix.Mount("none", a[0], "tmpfs", 0, "")
	},
	"unshare-user": func([]string) error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"unshare-ns":   func([]string) error { return unix.Unshare(unix.CLONE_NEWNS) },
	"clone-newuser": func(a []string) error {
		_, err := syscall.ForkExec(a[0], []string{a[0]}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}})
		return err
	},
	"clone3": func([]string) error {
		// Invalid arguments: without the filter this is EINVAL or
		// EFAULT, never a fork.
		return rawErr(unix.Syscall(unix.SYS_CLONE3, 0, 0, 0))
	},
	"chroot": func(a []string) error { return unix.Chroot(a[0]) },
	"setns": func([]string) error {
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Setns(fd, unix.CLONE_NEWNET)
	},
	"ptrace": func(a []string) error {
		return unix.PtraceAttach(atoi(a[0]))
	},
	"process_vm_readv": func(a []string) error {
		var b [8]byte
		local := []unix.Iovec{{Base: &b[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
		_, err := unix.ProcessVMReadv(atoi(a[0]), local, remote, 0)
		return err
	},
	"pidfd_getfd": func(a []string) error {
		pfd, err := unix.PidfdOpen(atoi(a[0]), 0)
		if err != nil {
			return fmt.Errorf("pidfd_open: %w", err)
		}
		_, err = unix.PidfdGetfd(pfd, 0, 0)
		return err
	},
	"kill": func(a []string) error { return unix.Kill(atoi(a[0]), unix.SIGUSR1) },
	// supervisor-mem opens the memory of every thread of the parent
	// (the supervisor); nil if any opened.
	"supervisor-mem": func([]string) error {
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
	},
	"kill-own-child": func(a []string) error {
		c := exec.Command(a[0], "60")
		if err := c.Start(); err != nil {
			return err
		}
		defer c.Wait()
		return c.Process.Signal(unix.SIGKILL)
	},
	"io_uring_setup": func([]string) error {
		var params [120]byte
		return rawErr(unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0))
	},
	"bpf": func([]string) error { return rawErr(unix.Syscall(unix.SYS_BPF, 0, 0, 0)) },
	"keyctl": func([]string) error {
		return rawErr(unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(^uint32(2)), 0))
	}, // KEY_SPEC_SESSION_KEYRING
	"perf_event_open": func([]string) error {
		return rawErr(unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0))
	},
	"socket": func(a []string) error {
		fd, err := unix.Socket(atoi(a[0]), atoi(a[1]), atoi(a[2]))
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"socketpair": func(a []string) error {
		fds, err := unix.Socketpair(atoi(a[0]), atoi(a[1]), 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return err
	},
	"bind-tcp": func(a []string) error {
		l, err := net.Listen("tcp4", "127.0.0.1:"+a[0])
		if err == nil {
			l.Close()
		}
		return err
	},
	"connect-unix": func(a []string) error {
		c, err := net.Dial("unix", a[0])
		if err == nil {
			c.Close()
		}
		return err
	},
	"connect-tcp": func(a []string) error {
		c, err := net.Dial("tcp4", a[0])
		if err == nil {
			c.Close()
		}
		return err
	},
	"own-unix-socket": func(a []string) error {
		// A server the instance creates in its own directory.
		l, err := net.Listen("unix", a[0])
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		defer l.Close()
		c, err := net.Dial("unix", a[0])
		if err == nil {
			c.Close()
		}
		return err
	},
	"connect-abstract": func(a []string) error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + a[0]})
	},
	"personality": func(a []string) error {
		v, err := strconv.ParseUint(a[0], 0, 64)
		if err != nil {
			return err
		}
		return rawErr(unix.Syscall(unix.SYS_PERSONALITY, uintptr(v), 0, 0))
	},
	"tiocsti": func([]string) error {
		c := byte('x')
		return rawErr(unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c))))
	},
	"x32-getpid": func([]string) error {
		return rawErr(unix.Syscall(0x40000000|unix.SYS_GETPID, 0, 0, 0))
	},
	// pty opens a pseudo-terminal pair and uses terminal ioctls on
	// both ends, as opencode's terminal feature (bun-pty) does.
	"pty": func([]string) error {
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
	},
	// sh runs a shell script; a non-zero exit is reported as EIO.
	"sh": func(a []string) error {
		c := exec.Command("/bin/sh", "-c", a[0])
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "probe sh: %v\n", err)
			return unix.EIO
		}
		return nil
	},
	"exit": func(a []string) error { os.Exit(atoi(a[0])); return nil },
	"selfkill": func(a []string) error {
		return unix.Kill(os.Getpid(), unix.SignalNum(a[0]))
	},
	// trap-term writes a[0] when ready, then exits 42 on SIGTERM.
	"trap-term": func(a []string) error {
		c := make(chan os.Signal, 1)
		signal.Notify(c, unix.SIGTERM)
		if err := os.WriteFile(a[0], []byte("ready"), 0o644); err != nil {
			return err
		}
		<-c
		os.Exit(42)
		return nil
	},
	// pause writes its pid to a[0] and waits to be killed.
	"pause": func(a []string) error {
		if err := os.WriteFile(a[0], []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return err
		}
		select {}
	},
	// grandchild starts a[1] 60 in its process group, writes its pid
	// to a[0] and exits without waiting for it.
	"grandchild": func(a []string) error {
		c := exec.Command(a[1], "60")
		if err := c.Start(); err != nil {
			return err
		}
		return os.WriteFile(a[0], []byte(strconv.Itoa(c.Process.Pid)), 0o644)
	},
	// fds fails if the target inherited a socket, pipe or seccomp fd
	// besides 0, 1 and 2. (The Go runtime of the probe itself opens
	// cgroup files, an epoll and an eventfd.)
	"fds": func([]string) error {
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
	},
	"identity": func(a []string) error { return checkIdentity(atoi(a[0]), atoi(a[1]), a[2]) },
	"env":      func(a []string) error { return checkEnv(a) },
}

func runProbe(args []string) int {
	if len(args) == 0 || probes[args[0]] == nil {
		fmt.Fprintf(os.Stderr, "probe: unknown probe %q\n", args)
		return probeOther
	}
	err := probes[args[0]](args[1:])
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno > 0 && errno < probeOther {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", args[0], err)
		return int(errno)
	}
	fmt.Fprintf(os.Stderr, "probe %s: %v\n", args[0], err)
	return probeOther
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
