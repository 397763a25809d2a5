//go:build linux

package probe

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// escapeVerbs are the escape probes of the red-team battery
// (e2e/escape_test.go). Each prints "ok" or the errno, like the rest.
var escapeVerbs = map[string]Verb{
	// symlink-read TARGET LINK: a symlink is only a name; reading
	// through it must meet the target's rules.
	"symlink-read": func(a []string) (string, error) {
		os.Remove(a[1])
		if err := unix.Symlink(a[0], a[1]); err != nil {
			return "", err
		}
		defer os.Remove(a[1])
		return readAll(a[1])
	},
	// opath-openat DIR NAME: Landlock lets O_PATH opens through; the
	// real open relative to that fd must still be checked.
	"opath-openat": func(a []string) (string, error) {
		dfd, err := unix.Open(a[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(dfd)
		// openat, not openat2: the sandbox refuses openat2 whole
		// (ENOSYS; its mode is out of seccomp's sight).
		fd, err := unix.Openat(dfd, a[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		unix.Close(fd)
		return "", nil
	},
	// opath-reopen FILE: reopening an O_PATH fd for reading through
	// /proc/self/fd is a real open of the file.
	"opath-reopen": func(a []string) (string, error) {
		pfd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(pfd)
		return readAll("/proc/self/fd/" + strconv.Itoa(pfd))
	},
	// proc-root-read PATH: the same file through /proc/self/root.
	"proc-root-read": func(a []string) (string, error) { return readAll("/proc/self/root" + a[0]) },
	// vm-write PID: process_vm_writev into PID ("self" for the twin).
	"vm-write": func(a []string) (string, error) {
		pid := os.Getpid()
		if a[0] == "parent" {
			pid = os.Getppid()
		}
		var src, dst [8]byte
		local := []unix.Iovec{{Base: &src[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&dst[0])), Len: 8}}
		_, err := unix.ProcessVMWritev(pid, local, remote, 0)
		return "", err
	},
	// kill-parent SIG: signal the process that started us (in the
	// sandbox: the supervisor).
	"kill-parent": func(a []string) (string, error) {
		sig, _ := strconv.Atoi(a[0])
		ppid := os.Getppid()
		if ppid == 0 {
			// The supervisor is outside this PID namespace: it has no pid
			// here (and kill(0) would mean the caller's process group).
			return "", unix.ESRCH
		}
		return "", unix.Kill(ppid, unix.Signal(sig))
	},
	// connect-forever PATH: connect to PATH in a loop until killed,
	// which the supervisor-death test does to the supervisor.
	"connect-forever": func(a []string) (string, error) {
		for {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return "", err
			}
			unix.Connect(fd, &unix.SockaddrUnix{Name: a[0]})
			unix.Close(fd)
		}
	},
	// clone-parent: clone(CLONE_PARENT|SIGCHLD); the child exits at once.
	// From the server (pid 2 of the sandbox's PID namespace) its parent
	// would be the supervisor outside, which reaps only the server: the
	// zombie kept the dying guard, and `run` hung (red-team finding).
	"clone-parent": func(a []string) (string, error) {
		r, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_PARENT|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			return "", e
		}
		if r == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		return strconv.Itoa(int(r)), nil
	},
	// ptrace-parent: attach to the supervisor.
	"ptrace-parent": func(a []string) (string, error) {
		runtime.LockOSThread()
		err := unix.PtraceAttach(os.Getppid())
		if err == nil {
			unix.PtraceDetach(os.Getppid())
		}
		return "", err
	},
	"esc-userfaultfd": func(a []string) (string, error) {
		r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
		if e != 0 {
			return "", e
		}
		unix.Close(int(r))
		return "", nil
	},
	"esc-perf-event-open": func(a []string) (string, error) {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{}))}
		attr.Bits = unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		return "", err
	},
	"esc-add-key": func(a []string) (string, error) {
		_, err := unix.AddKey("user", "ocnix-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return "", err
	},
	// esc-io-uring-enter and esc-io-uring-register on a bad fd (the
	// red-team probes without "esc-" set up a ring): EBADF when the
	// call reaches the kernel, the seccomp errno when it does not.
	"esc-io-uring-enter": func(a []string) (string, error) {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)
		return "", errnoOrNil(e)
	},
	"esc-io-uring-register": func(a []string) (string, error) {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0, 0, 0)
		return "", errnoOrNil(e)
	},
	// esc-clone3: clone3 with a size too small for any struct: EINVAL when the
	// kernel sees it, ENOSYS from the filter (which hides every flag,
	// CLONE_NEW* included, and makes glibc fall back to clone).
	"esc-clone3": func(a []string) (string, error) {
		var args [88]byte
		_, _, e := unix.Syscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args[0])), 1, 0)
		return "", errnoOrNil(e)
	},
	// memfd-exec ARGS: this probe copied into a memfd and executed from
	// there with ARGS; the detail is its verdict. Exec from memory works
	// (the instance may exec what it writes in its own paths anyway);
	// what matters is that the new program is as confined as before.
	"esc-memfd-exec": func(a []string) (string, error) {
		fd, err := unix.MemfdCreate("ocnix-probe", unix.MFD_CLOEXEC)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		bin, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			return "", err
		}
		if _, err := unix.Write(fd, bin); err != nil {
			return "", err
		}
		out, err := exec.Command("/proc/self/fd/"+strconv.Itoa(fd), a...).Output()
		if err != nil {
			return "", unwrap(err)
		}
		return strings.TrimSpace(string(out)), nil
	},
	// esc-tiocsti: push a byte into a pseudo-terminal's input, as an
	// injector would into an operator's shell.
	"esc-tiocsti": func(a []string) (string, error) {
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(m)
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
			return "", err
		}
		n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
		if err != nil {
			return "", err
		}
		s, err := unix.Open("/dev/pts/"+strconv.Itoa(n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(s)
		c := byte('x')
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		return "", errnoOrNil(e)
	},
}

func readAll(p string) (string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64)
	_, err = unix.Read(fd, buf)
	return "", err
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
