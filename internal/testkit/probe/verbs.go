//go:build linux

// Package probe is TEST-ONLY: the one probe program of the ocnix tests. A
// probe tries one thing (a verb) from inside the sandbox and reports the
// result, so that a test can assert the exact errno of every denial and of its
// positive twin outside the sandbox. Its verbs are joined in one table
// (verbs, below); a verb name in two groups panics at start.
//
// Two programs run it: e2e/probe (the command the e2e tests and the systemd
// tier build and run through the launcher) and the sandbox package's test
// binary, which re-executes itself as the target program.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Verb tries one thing with its arguments and returns a detail to print
// after "ok", or the error it got.
type Verb func(args []string) (string, error)

// verbs is every verb, joined from the groups that live beside their code.
// (Assigned in init: redteam's at-parent looks verbs up.)
var verbs map[string]Verb

// groups is the one list of verb groups.
func groups() []map[string]Verb {
	return []map[string]Verb{basicVerbs, processVerbs, redteamVerbs, escapeVerbs, dnsVerbs, socketVerbs, pidnsVerbs, fakeModelVerbs}
}

func init() { verbs = join(groups()...) }

// join merges verb groups; a name in two groups panics, so that no verb is
// silently spelled twice or replaced.
func join(groups ...map[string]Verb) map[string]Verb {
	all := map[string]Verb{}
	for _, group := range groups {
		for name, v := range group {
			if _, dup := all[name]; dup {
				panic("probe: verb " + name + " registered twice")
			}
			all[name] = v
		}
	}
	return all
}

// Report is how a probe tells its result.
type Report int

const (
	// Print prints one line on stdout, "ok [detail]", the errno's name or
	// "error: ...", and exits 0: the launcher's own exit status stays apart
	// from the probe's verdict (e2e and systemd tests).
	Print Report = iota
	// ExitStatus exits with the verdict: 0, the errno number, or ExitOther;
	// failures are described on stderr. For callers that see only the exit
	// status (the sandbox tests run the probe through sandbox.Run, which
	// passes its own stdout on).
	ExitStatus
)

// ExitOther is the ExitStatus for an error that is not an errno (and for an
// unknown verb).
const ExitOther = 200

// Main runs the verb args[0] with args[1:] and returns the exit status.
func Main(args []string, report Report) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: probe VERB [ARGS]")
		return usage(report)
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "probe: unknown verb %q\n", args[0])
		return usage(report)
	}
	detail, err := v(args[1:])
	var errno syscall.Errno
	isErrno := errors.As(err, &errno)
	if report == ExitStatus {
		switch {
		case err == nil:
			return 0
		case isErrno && errno > 0 && errno < ExitOther:
			fmt.Fprintf(os.Stderr, "probe %s: %v\n", args[0], err)
			return int(errno)
		}
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", args[0], err)
		return ExitOther
	}
	switch {
	case isErrno:
		fmt.Println(unix.ErrnoName(errno))
	case err != nil:
		fmt.Println("error:", err)
	case detail != "":
		fmt.Println("ok", detail)
	default:
		fmt.Println("ok")
	}
	return 0
}

func usage(report Report) int {
	if report == ExitStatus {
		return ExitOther
	}
	return 2
}

// basicVerbs: files, exec, sockets, namespaces, and the servers that tests
// run on their own hosts.
var basicVerbs = map[string]Verb{
	"write": func(a []string) (string, error) {
		fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte("probe\n"))
		return "", err
	},
	"read": func(a []string) (string, error) { return readAll(a[0]) },
	"exec": func(a []string) (string, error) {
		out, err := exec.Command(a[0], a[1:]...).Output()
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return "", pe.Err
			}
			return "", err
		}
		return string(trim(out)), nil
	},
	"connect-unix": func(a []string) (string, error) {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		return "", unix.Connect(fd, &unix.SockaddrUnix{Name: a[0]})
	},
	"serve-unix-and-connect": func(a []string) (string, error) {
		// A socket the instance creates in its own read-write path.
		os.Remove(a[0])
		l, err := net.Listen("unix", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
			}
		}()
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		return "", unix.Connect(fd, &unix.SockaddrUnix{Name: a[0]})
	},
	"connect-tcp": func(a []string) (string, error) {
		c, err := net.DialTimeout("tcp", a[0], 3*time.Second)
		if err != nil {
			return "", unwrap(err)
		}
		c.Close()
		return "", nil
	},
	// lookup resolves a name with the pure-Go resolver, which reads
	// /etc/resolv.conf (the instance's own, inside its netns) and asks
	// over UDP.
	"lookup": func(a []string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := &net.Resolver{PreferGo: true}
		addrs, err := r.LookupHost(ctx, a[0])
		if err != nil {
			return "", unwrap(err)
		}
		return strings.Join(addrs, ","), nil
	},
	"udp-send": func(a []string) (string, error) {
		c, err := net.Dial("udp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		defer c.Close()
		_, err = c.Write([]byte("probe"))
		return "", unwrap(err)
	},
	"bind-tcp": func(a []string) (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:"+a[0])
		if err != nil {
			return "", unwrap(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
	},
	"bind-udp": func(a []string) (string, error) {
		c, err := net.ListenPacket("udp4", "127.0.0.1:"+a[0])
		if err != nil {
			return "", unwrap(err)
		}
		defer c.Close()
		return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port), nil
	},
	// bind-unix NAME binds a stream socket: a path, "@name" for an abstract
	// name, or "autobind" for the kernel's abstract autobind; with a second
	// argument it first changes into that directory (relative names).
	"bind-unix": func(a []string) (string, error) {
		if len(a) > 1 {
			if err := os.Chdir(a[1]); err != nil {
				return "", unwrap(err)
			}
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		if a[0] == "autobind" {
			// sockaddr_un with the family only: addrlen 2.
			fam := [2]byte{}
			*(*uint16)(unsafe.Pointer(&fam[0])) = unix.AF_UNIX
			if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&fam[0])), 2); e != 0 {
				return "", e
			}
		} else if err := unix.Bind(fd, &unix.SockaddrUnix{Name: a[0]}); err != nil {
			return "", err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return "", err
		}
		if name := sa.(*unix.SockaddrUnix).Name; name != "" && (name[0] == 0 || name[0] == '@') {
			return "@" + name[1:], nil
		}
		if a[0] != "autobind" && a[0][0] != '@' && (len(a) < 3 || a[2] != "keep") {
			os.Remove(a[0])
		}
		return "", nil
	},
	// bind-storm N DIR binds N fresh unix sockets to DIR/storm.sock (unlinked
	// before each) while an interval timer sends SIGALRM every 30 µs: Go's
	// handler has SA_RESTART, so a bind that a signal interrupts is issued
	// again by the kernel. ok when every bind succeeded, else the tally.
	"bind-storm": func(a []string) (string, error) {
		n := atoi(a[0])
		p := filepath.Join(a[1], "storm.sock")
		alrm := make(chan os.Signal, 1)
		ossignal.Notify(alrm, unix.SIGALRM)
		defer ossignal.Stop(alrm)
		tick := unix.Itimerval{Interval: unix.Timeval{Usec: 30}, Value: unix.Timeval{Usec: 30}}
		if _, err := unix.Setitimer(unix.ItimerReal, tick); err != nil {
			return "", err
		}
		defer unix.Setitimer(unix.ItimerReal, unix.Itimerval{})
		tally := map[string]int{}
		for range n {
			os.Remove(p)
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return "", err
			}
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: p})
			unix.Close(fd)
			if err != nil {
				tally[unix.ErrnoName(err.(unix.Errno))]++
			}
		}
		os.Remove(p)
		if len(tally) > 0 {
			return "", fmt.Errorf("%d binds: %v failed", n, tally)
		}
		return fmt.Sprintf("%d binds", n), nil
	},
	"mount": func(a []string) (string, error) {
		return "", unix.Mount("tmpfs", a[0], "tmpfs", 0, "")
	},
	"ptrace": func(a []string) (string, error) {
		pid, _ := strconv.Atoi(a[0])
		runtime.LockOSThread()
		err := unix.PtraceAttach(pid)
		if err == nil {
			unix.PtraceDetach(pid)
		}
		return "", err
	},
	"io-uring-setup": func(a []string) (string, error) {
		var params [120]byte
		r, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e != 0 {
			return "", e
		}
		unix.Close(int(r))
		return "", nil
	},
	"bpf": func(a []string) (string, error) {
		var attr [128]byte
		_, _, e := unix.Syscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		if e != 0 {
			return "", e
		}
		return "", nil
	},
	"keyctl": func(a []string) (string, error) {
		_, err := unix.KeyctlJoinSessionKeyring("ocnix-probe")
		return "", err
	},
	"chmod": func(a []string) (string, error) {
		mode, _ := strconv.ParseUint(a[1], 8, 32)
		return "", unix.Chmod(a[0], uint32(mode))
	},
	"fchmodat2": func(a []string) (string, error) {
		// The raw syscall (Linux 6.6), which libc wrappers may not use yet.
		mode, _ := strconv.ParseUint(a[1], 8, 32)
		p, err := unix.BytePtrFromString(a[0])
		if err != nil {
			return "", err
		}
		atFdcwd := unix.AT_FDCWD
		_, _, e := unix.Syscall6(452, uintptr(atFdcwd), uintptr(unsafe.Pointer(p)), uintptr(mode), 0, 0, 0)
		if e != 0 {
			return "", e
		}
		return "", nil
	},
	"create-mode": func(a []string) (string, error) {
		mode, _ := strconv.ParseUint(a[1], 8, 32)
		fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(mode))
		if err == nil {
			unix.Close(fd)
		}
		return "", err
	},
	"whoami": func(a []string) (string, error) {
		groups, _ := unix.Getgroups()
		return fmt.Sprintf("uid=%d gid=%d groups=%v", unix.Getuid(), unix.Getgid(), groups), nil
	},
	"race":      race,
	"bind-race": bindRace,
	"connect-loop": func(a []string) (string, error) {
		// ns per connect+close to a unix socket, for the benchmarks.
		n, _ := strconv.Atoi(a[1])
		start := time.Now()
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return "", err
			}
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: a[0]}); err != nil {
				unix.Close(fd)
				return "", err
			}
			unix.Close(fd)
		}
		return strconv.FormatInt(time.Since(start).Nanoseconds()/int64(n), 10), nil
	},
	"walk": func(a []string) (string, error) {
		// Walk a tree and read every file, N times (default 1); prints the
		// files read per pass and the fastest pass in ns, which is robust to
		// a noisy neighbour.
		passes := 1
		if len(a) > 1 {
			passes, _ = strconv.Atoi(a[1])
		}
		best := time.Duration(1 << 62)
		files := 0
		for range passes {
			n, d, err := walkOnce(a[0])
			if err != nil {
				return "", unwrap(err)
			}
			files, best = n, min(best, d)
		}
		return fmt.Sprintf("%d %d", files, best.Nanoseconds()), nil
	},
	// Network clients, and the servers the tests run on their own hosts.
	"udp-echo": func(a []string) (string, error) {
		c, err := net.Dial("udp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", unwrap(err)
		}
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return "", fmt.Errorf("timeout")
			}
			return "", unwrap(err)
		}
		return string(buf[:n]), nil
	},
	// Servers for the tests' own hosts (run outside the sandbox, in a test netns).
	"serve-tcp": func(a []string) (string, error) {
		l, err := net.Listen("tcp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				return "", err
			}
			c.Write([]byte("hello\n"))
			c.Close()
		}
	},
	"serve-udp": func(a []string) (string, error) {
		pc, err := net.ListenPacket("udp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		fmt.Println("listening")
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return "", err
			}
			pc.WriteTo(buf[:n], from)
		}
	},
	"serve-unix": func(a []string) (string, error) {
		// Writes its name (a[1]) to each client: the race test tells servers apart.
		os.Remove(a[0])
		l, err := net.Listen("unix", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		os.Chmod(a[0], 0o777)
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				return "", err
			}
			c.Write([]byte(a[1]))
			c.Close()
		}
	},
}

// race connects to good from one thread while another flips the same sockaddr
// buffer to evil: a check-then-continue gate lets some connects reach evil.
// It prints "ok good=N evil=M denied=K".
func race(a []string) (string, error) {
	good, evil := a[0], a[1]
	n, _ := strconv.Atoi(a[2])
	if len(good) != len(evil) {
		return "", fmt.Errorf("paths must have equal length")
	}
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	setPath := func(p string) {
		for i := 0; i < len(p); i++ {
			*(*byte)(unsafe.Pointer(&sa.Path[i])) = p[i]
		}
	}
	setPath(good)
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread()
		for !stop.Load() {
			setPath(evil)
			setPath(good)
		}
	}()
	var okGood, okEvil, denied int
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(2+len(good)+1))
		if e == 0 {
			// Each server writes its name on accept.
			buf := make([]byte, 4)
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
			k, _ := unix.Read(fd, buf)
			switch string(buf[:max(k, 0)]) {
			case "good":
				okGood++
			case "evil":
				okEvil++
			}
		} else {
			denied++
		}
		unix.Close(fd)
	}
	stop.Store(true)
	return fmt.Sprintf("good=%d evil=%d denied=%d", okGood, okEvil, denied), nil
}

func unwrap(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// walkOnce walks root and reads every regular file; it returns the files
// read and the time taken.
func walkOnce(root string) (int, time.Duration, error) {
	start := time.Now()
	files := 0
	buf := make([]byte, 4096)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		for {
			if _, err := f.Read(buf); err != nil {
				break
			}
		}
		f.Close()
		files++
		return nil
	})
	return files, time.Since(start), err
}

// bindRace binds fresh unix sockets N times to an address whose first
// byte another thread flips between a pathname in dir and NUL (the same
// bytes as an abstract name). It reports how many binds got a file and how
// many an abstract name; a gate that checked one read and let the kernel
// read again would sometimes bind the abstract name.
func bindRace(a []string) (string, error) {
	dir := a[0]
	n, _ := strconv.Atoi(a[1])
	name := filepath.Join(dir, "race.sock")
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	for i := 0; i < len(name); i++ {
		*(*byte)(unsafe.Pointer(&sa.Path[i])) = name[i]
	}
	first := name[0]
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread()
		// Hold each state for a while, so that both kinds of bind happen
		// when nothing gates them (the bare twin).
		var sink int
		for !stop.Load() {
			*(*byte)(unsafe.Pointer(&sa.Path[0])) = 0
			for i := 0; i < 2000; i++ {
				sink += i
			}
			*(*byte)(unsafe.Pointer(&sa.Path[0])) = first
			for i := 0; i < 2000; i++ {
				sink += i
			}
		}
		_ = sink
	}()
	var files, abstract, denied int
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		_, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(2+len(name)))
		if e == 0 {
			if got, err := unix.Getsockname(fd); err == nil {
				if nm := got.(*unix.SockaddrUnix).Name; nm != "" && (nm[0] == 0 || nm[0] == '@') {
					abstract++
				} else {
					files++
					os.Remove(name)
				}
			}
		} else {
			denied++
		}
		unix.Close(fd)
	}
	stop.Store(true)
	return fmt.Sprintf("files=%d abstract=%d denied=%d", files, abstract, denied), nil
}
