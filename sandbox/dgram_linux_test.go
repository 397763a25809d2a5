package sandbox

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketpairDgramReachesAnyDatagramSocket pins the kernel behaviour
// behind denying socketpair(AF_UNIX, SOCK_DGRAM) below Landlock ABI 9:
// a datagram socketpair end, although connected, can sendto(2) any
// pathname datagram socket whose own peer is unset. The address is in
// sendmsg's msghdr, where seccomp cannot see it, so the gate could not
// stop it.
func TestSocketpairDgramReachesAnyDatagramSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "victim.sock")
	r, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	must(t, err)
	defer unix.Close(r)
	must(t, unix.Bind(r, &unix.SockaddrUnix{Name: p}))
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	if err := unix.Sendto(sp[0], []byte("x"), 0, &unix.SockaddrUnix{Name: p}); err != nil {
		t.Skipf("this kernel refuses the send (%v): socketpair datagram sockets could be allowed here", err)
	}
	buf := make([]byte, 8)
	n, _, err := unix.Recvfrom(r, buf, 0)
	if err != nil || string(buf[:n]) != "x" {
		t.Fatalf("victim did not receive the datagram: %q, %v", buf[:max(n, 0)], err)
	}
}
