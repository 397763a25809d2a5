package unixgate

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as the sandboxed child: TestMain runs childMain when
// this variable holds a JSON childPlan. fd 3 is the socketpair end for the listener fd.
const childEnv = "OCNIX_UNIXGATE_TEST_CHILD"

// childPlan is what the child does, in order.
type childPlan struct {
	NoFilter bool    // bare run, for the benchmark's baseline
	UID, GID int     // drop to these ids after sending the listener (0: stay root)
	Probes   []probe // run in order; results keyed by Name
}

// probe is one thing the child tries; the result is "ok" or an errno name.
type probe struct {
	Name  string
	Kind  string // see runProbe
	Path  string // unix socket path, or host:port for tcp kinds
	Evil  string // race: the path flipped in
	Chdir string // chdir (all threads) before the probe
	Type  int    // socket type, SOCK_STREAM when 0
	N     int    // iterations (race, bench, pending)
	Wait  int    // milliseconds of SO_SNDTIMEO (pending, tcpTimeo)
	// raw: a socket of Domain and Type connected to the bytes Addr with length Len.
	Domain int
	Addr   []byte
	Len    int
	// mixedCreds: a second thread acts as UID/GID; Path is a 0600 root socket, Evil a
	// world-writable one.
	UID, GID int
}

type childResult struct {
	Results map[string]string
	Counts  map[string]map[string]int // race and pending tallies per probe
	Nanos   map[string]int64          // bench: loop time per probe
}

func childMain(planJSON string) {
	var plan childPlan
	if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
		fmt.Fprintln(os.Stderr, "child: parse plan:", err)
		os.Exit(2)
	}
	if !plan.NoFilter {
		if err := installFilter(3); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
	}
	unix.Close(3)
	if plan.UID != 0 {
		// Go applies these to every thread (cgo: glibc's setxid broadcast).
		must(syscall.Setgroups(nil))
		must(syscall.Setresgid(plan.GID, plan.GID, plan.GID))
		must(syscall.Setresuid(plan.UID, plan.UID, plan.UID))
	}
	res := childResult{Results: map[string]string{}, Counts: map[string]map[string]int{}, Nanos: map[string]int64{}}
	for _, p := range plan.Probes {
		if p.Chdir != "" {
			must(os.Chdir(p.Chdir))
		}
		runProbe(p, &res)
	}
	must(json.NewEncoder(os.Stdout).Encode(res))
	os.Exit(0)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
}

// installFilter is the minimal filter of the real sandbox: connect goes to the supervisor,
// io_uring (which would bypass seccomp) fails. The listener travels over fd sock.
func installFilter(sock int) error {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return fmt.Errorf("create filter: %w", err)
	}
	if err := f.AddRule(seccomp.ScmpSyscall(unix.SYS_CONNECT), seccomp.ActNotify); err != nil {
		return fmt.Errorf("add connect rule: %w", err)
	}
	// Not in the real filter: lets a test check that Serve refuses what it does not know.
	if err := f.AddRule(seccomp.ScmpSyscall(unix.SYS_GETPGID), seccomp.ActNotify); err != nil {
		return fmt.Errorf("add getpgid rule: %w", err)
	}
	for _, sc := range []int{unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER} {
		if err := f.AddRule(seccomp.ScmpSyscall(sc), seccomp.ActErrno.SetReturnCode(int16(unix.EPERM))); err != nil {
			return fmt.Errorf("add io_uring rule: %w", err)
		}
	}
	if err := f.Load(); err != nil {
		return fmt.Errorf("load filter: %w", err)
	}
	nfd, err := f.GetNotifFd()
	if err != nil {
		return fmt.Errorf("get listener: %w", err)
	}
	// Nothing may connect between Load and this send: it would wait for ever.
	if err := unix.Sendmsg(sock, []byte{'N'}, unix.UnixRights(int(nfd)), nil, 0); err != nil {
		return fmt.Errorf("send listener: %w", err)
	}
	return unix.Close(int(nfd))
}

func errnoName(e unix.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno%d", int(e))
}

func sunBytes(path string) []byte {
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	for i := range len(path) {
		sa.Path[i] = int8(path[i])
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrUnix)
	return append([]byte(nil), b[:2+len(path)+1]...)
}

func connectRaw(fd int, addr []byte) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&addr[0])), uintptr(len(addr)))
	return e
}

func unixSocket(typ int) int {
	if typ == 0 {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	must(err)
	return fd
}

// runProbe runs one probe. Kinds:
//   - unix: connect a fresh unix socket to Path.
//   - abstract: connect to the abstract name Path.
//   - own: bind and listen on Path, then connect to it (the instance's own socket).
//   - tcp, tcpNonblock: connect to Path (host:port, IPv4 or [IPv6]); non-blocking waits
//     for writability and reports "EINPROGRESS/" + SO_ERROR.
//   - badfd, badptr: connect with fd 9999, or with address pointer 8.
//   - notsock: connect /dev/null's fd to Path.
//   - nodump: make the process non-dumpable, then connect to Path.
//   - udp: connect a UDP socket to Path (host:port).
//   - iouring: io_uring_setup must fail.
//   - raw: connect a Domain/Type socket to Addr with length Len.
//   - tcpTimeo: blocking TCP connect to Path with Wait ms of SO_SNDTIMEO.
//   - mixedCreds: alternate connects between this root thread and one that acts as
//     UID/GID (per-thread ids), so the supervisor must switch identity back and forth.
//   - getpgid: a syscall the test filter (only) sends to Serve.
//   - race: N connects to Path while another thread flips the buffer to Evil.
//   - pending: N threads connect at once to Path (a full backlog) with Wait ms SO_SNDTIMEO.
//   - sleep: sleep N ms.
//   - bench: N connect+close to Path, time in Nanos.
//   - benchDenied: the same, each connect failing with EACCES.
func runProbe(p probe, res *childResult) {
	switch p.Kind {
	case "unix":
		fd := unixSocket(p.Type)
		res.Results[p.Name] = errnoName(connectRaw(fd, sunBytes(p.Path)))
		unix.Close(fd)
	case "abstract":
		fd := unixSocket(p.Type)
		b := sunBytes("@" + p.Path)
		b[2] = 0
		res.Results[p.Name] = errnoName(connectRaw(fd, b[:len(b)-1]))
		unix.Close(fd)
	case "own":
		l := unixSocket(p.Type)
		must(unix.Bind(l, &unix.SockaddrUnix{Name: p.Path}))
		if p.Type != unix.SOCK_DGRAM {
			must(unix.Listen(l, 8))
		}
		fd := unixSocket(p.Type)
		res.Results[p.Name] = errnoName(connectRaw(fd, sunBytes(p.Path)))
		unix.Close(fd)
		unix.Close(l)
	case "tcp", "tcpNonblock":
		res.Results[p.Name] = tcpProbe(p)
	case "badfd":
		res.Results[p.Name] = errnoName(connectRaw(9999, sunBytes(p.Path)))
	case "badptr":
		fd := unixSocket(0)
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), 8, unix.SizeofSockaddrUnix)
		res.Results[p.Name] = errnoName(e)
		unix.Close(fd)
	case "notsock":
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		must(err)
		res.Results[p.Name] = errnoName(connectRaw(fd, sunBytes(p.Path)))
		unix.Close(fd)
	case "nodump":
		// ssh-agent and gpg-agent do this; /proc/<tid>/root is then closed to the caller.
		must(unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0))
		fd := unixSocket(p.Type)
		res.Results[p.Name] = errnoName(connectRaw(fd, sunBytes(p.Path)))
		unix.Close(fd)
	case "udp":
		sa, family := parseHostPort(p.Path)
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		must(err)
		res.Results[p.Name] = errnoName(connectRaw(fd, sa))
		unix.Close(fd)
	case "raw":
		fd, err := unix.Socket(p.Domain, p.Type|unix.SOCK_CLOEXEC, 0)
		must(err)
		buf := make([]byte, 256)
		copy(buf, p.Addr)
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(p.Len))
		res.Results[p.Name] = errnoName(e)
		unix.Close(fd)
	case "tcpTimeo":
		sa, family := parseHostPort(p.Path)
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		must(err)
		tv := unix.NsecToTimeval((time.Duration(p.Wait) * time.Millisecond).Nanoseconds())
		must(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv))
		res.Results[p.Name] = errnoName(connectRaw(fd, sa))
		unix.Close(fd)
	case "mixedCreds":
		mixedCredsProbe(p, res)
	case "getpgid":
		_, _, e := unix.Syscall(unix.SYS_GETPGID, 0, 0, 0)
		res.Results[p.Name] = errnoName(e)
	case "iouring":
		var params [120]byte
		_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
		res.Results[p.Name] = errnoName(e)
	case "race":
		res.Counts[p.Name] = raceProbe(p)
	case "pending":
		res.Counts[p.Name] = pendingProbe(p)
	case "sleep":
		time.Sleep(time.Duration(p.N) * time.Millisecond)
	case "bench", "benchDenied":
		want := unix.Errno(0)
		if p.Kind == "benchDenied" {
			want = unix.EACCES
		}
		addr := sunBytes(p.Path)
		start := time.Now()
		for range p.N {
			fd := unixSocket(0)
			if e := connectRaw(fd, addr); e != want {
				must(fmt.Errorf("bench connect: got %v, want %v", e, want))
			}
			unix.Close(fd)
		}
		res.Nanos[p.Name] = time.Since(start).Nanoseconds()
	default:
		must(fmt.Errorf("unknown probe kind %q", p.Kind))
	}
}

func tcpProbe(p probe) string {
	sa, family := parseHostPort(p.Path)
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if p.Kind == "tcpNonblock" {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ, 0)
	must(err)
	defer unix.Close(fd)
	e := connectRaw(fd, sa)
	if p.Kind == "tcp" || e != unix.EINPROGRESS {
		return errnoName(e)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	_, err = unix.Poll(pfd, 5000)
	for err == unix.EINTR {
		_, err = unix.Poll(pfd, 5000)
	}
	if err != nil {
		return "poll:" + err.Error()
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	must(err)
	return "EINPROGRESS/" + errnoName(unix.Errno(soerr))
}

// raceProbe connects from a locked thread while a second thread flips the path between
// good and evil in the very buffer the kernel (and the supervisor) reads.
func raceProbe(p probe) map[string]int {
	good, evil := sunBytes(p.Path), sunBytes(p.Evil)
	if len(good) != len(evil) {
		must(fmt.Errorf("race paths differ in length"))
	}
	buf := make([]byte, len(good))
	copy(buf, good)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		for i := 0; !stop.Load(); i++ {
			src := good
			if i&1 == 1 {
				src = evil
			}
			copy(buf, src) // deliberately unsynchronised with the connect
		}
	}()
	counts := map[string]int{}
	runtime.LockOSThread()
	for range p.N {
		fd := unixSocket(0)
		counts[errnoName(connectRaw(fd, buf))]++
		unix.Close(fd)
	}
	runtime.UnlockOSThread()
	stop.Store(true)
	wg.Wait()
	return counts
}

// pendingProbe starts N blocking connects at once to a server that never accepts.
func pendingProbe(p probe) map[string]int {
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range p.N {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd := unixSocket(0)
			defer unix.Close(fd)
			tv := unix.NsecToTimeval((time.Duration(p.Wait) * time.Millisecond).Nanoseconds())
			must(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv))
			e := connectRaw(fd, sunBytes(p.Path))
			mu.Lock()
			counts[errnoName(e)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

func mixedCredsProbe(p probe, res *childResult) {
	work := make(chan func())
	go func() {
		// Per-thread ids (raw syscalls), so only this thread is the user. It is never
		// unlocked: the runtime retires the thread when the goroutine ends.
		runtime.LockOSThread()
		for _, sc := range [][4]uintptr{
			{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(p.GID), uintptr(p.GID), uintptr(p.GID)},
			{unix.SYS_SETRESUID, uintptr(p.UID), uintptr(p.UID), uintptr(p.UID)},
		} {
			if _, _, e := unix.RawSyscall(sc[0], sc[1], sc[2], sc[3]); e != 0 {
				must(fmt.Errorf("per-thread id change: %w", e))
			}
		}
		for f := range work {
			f()
		}
	}()
	asUser := func(path string) string {
		var r string
		done := make(chan struct{})
		work <- func() {
			fd := unixSocket(0)
			r = errnoName(connectRaw(fd, sunBytes(path)))
			unix.Close(fd)
			close(done)
		}
		<-done
		return r
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	asRoot := func(path string) string {
		fd := unixSocket(0)
		defer unix.Close(fd)
		return errnoName(connectRaw(fd, sunBytes(path)))
	}
	res.Results["UserSecret"] = asUser(p.Path)
	res.Results["RootSecret"] = asRoot(p.Path)
	res.Results["UserOpen"] = asUser(p.Evil)
	res.Results["RootOpen"] = asRoot(p.Evil)
	res.Results["UserSecretAgain"] = asUser(p.Path)
	res.Results["UserOpenAgain"] = asUser(p.Evil)
	close(work)
}
