//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketVerbs: socket creation against an expected allow-list, datagram
// sends and binds that a gate must decide from the kernel's view, and a
// mix of routine gated calls for the seccomp log test.
var socketVerbs = map[string]Verb{
	"socket-expect":        socketExpect,
	"unix-raw-sendto":      unixRawSendto,
	"bind-raw":             bindRaw,
	"routine-then-deny":    routineThenDeny,
	"bind-exact-ephemeral": bindExactEphemeral,
}

// bindExactEphemeral: PORT. Asks the kernel, with IP_LOCAL_PORT_RANGE
// (SOL_IP 51, Linux 6.3), to pick exactly PORT for a TCP bind to
// 127.0.0.1:0: the port it got ("ok PORT"). The red team took
// another instance's listen port this way.
func bindExactEphemeral(a []string) (string, error) {
	port, err := strconv.Atoi(a[0])
	if err != nil {
		return "", err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, 51, port|port<<16); err != nil {
		return "", err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return "", err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(sa.(*unix.SockaddrInet4).Port), nil
}

// socketExpect: CALL F,T,P,WANT... CALL is socket or socketpair; each
// argument is a family, type and protocol (numbers, 0x allowed, 64 bits
// so that high bits can be set) and the errno number wanted (0: success).
// Every mismatch is printed on stderr; the verb fails with EIO if any.
func socketExpect(a []string) (string, error) {
	bad := 0
	for _, c := range a[1:] {
		var v [4]uint64
		parts := strings.Split(c, ",")
		if len(parts) != 4 {
			return "", fmt.Errorf("socket-expect: %q: want F,T,P,WANT", c)
		}
		for i, s := range parts {
			n, err := strconv.ParseUint(s, 0, 64)
			if err != nil {
				return "", fmt.Errorf("socket-expect: %q: %v", c, err)
			}
			v[i] = n
		}
		var got unix.Errno
		switch a[0] {
		case "socket":
			fd, _, e := unix.Syscall(unix.SYS_SOCKET, uintptr(v[0]), uintptr(v[1]), uintptr(v[2]))
			if got = e; e == 0 {
				unix.Close(int(fd))
			}
		case "socketpair":
			var fds [2]int32
			_, _, e := unix.RawSyscall6(unix.SYS_SOCKETPAIR, uintptr(v[0]), uintptr(v[1]), uintptr(v[2]), uintptr(unsafe.Pointer(&fds[0])), 0, 0)
			if got = e; e == 0 {
				unix.Close(int(fds[0]))
				unix.Close(int(fds[1]))
			}
		default:
			return "", fmt.Errorf("socket-expect: call %q", a[0])
		}
		if got != unix.Errno(v[3]) {
			bad++
			fmt.Fprintf(os.Stderr, "%s(%#x, %#x, %d) = %s, want %s\n", a[0], v[0], v[1], v[2], errName(got), errName(unix.Errno(v[3])))
		}
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "socket-expect: %d of %d differ\n", bad, len(a)-1)
		return "", unix.EIO
	}
	return "", nil
}

func errName(e unix.Errno) string {
	if e == 0 {
		return "success"
	}
	return unix.ErrnoName(e)
}

// unixRawSendto: PATH. socket(AF_UNIX, SOCK_RAW), which the kernel makes
// a datagram socket, then sendto PATH: an unconnected send whose address
// no gate sees.
func unixRawSendto(a []string) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Sendto(fd, []byte("raw"), 0, &unix.SockaddrUnix{Name: a[0]})
}

// bindRaw: FAMILY TYPE PORT. An AF_INET socket of TYPE (SOCK_STREAM or
// SOCK_DGRAM) bound to 0.0.0.0:PORT with sa_family FAMILY as given
// (AF_UNSPEC is 0: the kernel reads it as AF_INET with INADDR_ANY).
func bindRaw(a []string) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, sockArg(a[1])|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var sa [16]byte // struct sockaddr_in
	*(*uint16)(unsafe.Pointer(&sa[0])) = uint16(sockArg(a[0]))
	binary.BigEndian.PutUint16(sa[2:4], uint16(atoi(a[2])))
	_, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(len(sa)))
	runtime.KeepAlive(&sa)
	if e != 0 {
		return "", e
	}
	return "", nil
}

// routineThenDeny: UNIXPATH TCPADDR. What a server does all day, each of
// it routine for seccomp (gated connects, threads and process spawns,
// which glibc and Go try with clone3 first, openat2's ENOSYS), then one
// real denial: unshare(CLONE_NEWUSER), which must fail with EPERM.
func routineThenDeny(a []string) (string, error) {
	for range 10 {
		c, err := net.Dial("unix", a[0])
		if err != nil {
			return "", fmt.Errorf("connect %s: %w", a[0], err)
		}
		c.Close()
		c, err = net.Dial("tcp", a[1])
		if err != nil {
			return "", fmt.Errorf("connect %s: %w", a[1], err)
		}
		c.Close()
	}
	// New OS threads: each locked goroutine that blocks needs its own.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			runtime.LockOSThread()
			time.Sleep(20 * time.Millisecond)
		})
	}
	wg.Wait()
	for range 3 {
		if err := exec.Command("/bin/true").Run(); err != nil {
			return "", fmt.Errorf("spawn: %w", err)
		}
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}
	if fd, err := unix.Openat2(unix.AT_FDCWD, "/", &how); err == nil {
		unix.Close(fd)
	}
	if err := unix.Unshare(unix.CLONE_NEWUSER); err != unix.EPERM {
		return "", fmt.Errorf("unshare(CLONE_NEWUSER) = %v, want EPERM", err)
	}
	return "", nil
}
