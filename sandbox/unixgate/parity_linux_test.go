package unixgate

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestServeMatchesKernelErrnos runs connects whose outcome the allow-list does not decide
// twice, bare and through the gate, and wants the same errno: the on-behalf connect must
// be invisible except for policy.
func TestServeMatchesKernelErrnos(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	dir := openTempDir(t)
	sock := filepath.Join(dir, "ok.sock")
	listenUnix(t, sock, 0o666)
	tcp := listenTCP(t, "tcp4", "127.0.0.1:0").l.Addr().String()
	stalled := stalledTCP(t)
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	sun := sunBytes(sock)
	inet, _ := parseHostPort(tcp)
	probes := []probe{
		{Name: "UnixAllowed", Kind: "unix", Path: sock},
		{Name: "UnixFamilyOnly", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: 2},
		{Name: "UnixOneByte", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: 1},
		{Name: "UnixZeroLength", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: 0},
		{Name: "UnixTooLong", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: 111},
		{Name: "AddressLongerThanStorage", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: 129},
		{Name: "NegativeLength", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: sun, Len: -1},
		{Name: "InetAddressOnUnixSocket", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: inet, Len: len(inet)},
		{Name: "UnixAddressOnTCPSocket", Kind: "raw", Domain: unix.AF_INET, Type: unix.SOCK_STREAM, Addr: sun, Len: len(sun)},
		{Name: "UnspecOnUnixStream", Kind: "raw", Domain: unix.AF_UNIX, Type: unix.SOCK_STREAM, Addr: []byte{0, 0}, Len: 2},
		{Name: "UnspecOnUDP", Kind: "raw", Domain: unix.AF_INET, Type: unix.SOCK_DGRAM, Addr: []byte{0, 0}, Len: 16},
		{Name: "ShortInet", Kind: "raw", Domain: unix.AF_INET, Type: unix.SOCK_STREAM, Addr: inet, Len: 8},
		{Name: "TCPBlocking", Kind: "tcp", Path: tcp},
		{Name: "TCPNonBlocking", Kind: "tcpNonblock", Path: tcp},
		{Name: "TCPClosedBlocking", Kind: "tcp", Path: closedAddr},
		{Name: "TCPClosedNonBlocking", Kind: "tcpNonblock", Path: closedAddr},
		{Name: "TCPStalledWithSendTimeout", Kind: "tcpTimeo", Path: stalled, Wait: 300},
		{Name: "UDP", Kind: "udp", Path: tcp},
		{Name: "BadFD", Kind: "badfd", Path: sock},
		{Name: "BadPointer", Kind: "badptr"},
		{Name: "NotASocket", Kind: "notsock", Path: sock},
	}
	pol := Policy{Instance: "parity", Allow: []string{sock}}
	bare := runChild(t, childPlan{NoFilter: true, Probes: probes}, pol, nil)
	gated := runChild(t, childPlan{Probes: probes}, pol, nil)
	if len(bare.res.Results) != len(probes) {
		t.Fatalf("bare run reported %d of %d probes", len(bare.res.Results), len(probes))
	}
	if diff := cmp.Diff(bare.res.Results, gated.res.Results); diff != "" {
		t.Errorf("errnos differ (-bare +gated):\n%s", diff)
	}
	t.Logf("kernel errnos: %v", bare.res.Results)
}

// stalledTCP is a loopback listener whose accept queue is full: further SYNs are dropped,
// so a connect to it waits (the only "blackhole" a test may use here).
func stalledTCP(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IP{127, 0, 0, 1}, Port: sa.(*unix.SockaddrInet4).Port}).String()
	// Fill the queue: one connection completes into the backlog and is never accepted.
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}
