package netpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

// testInternet is a fake internet the test creates and owns: one netns
// reachable from the host over a veth, with one address in an allowed
// range and one in a blocked range, both inside 198.18.0.0/15 (RFC 2544
// benchmarking space, routed here only to this netns). Servers run inside
// it. No test traffic ever goes anywhere else.
type testInternet struct {
	ns, path   string
	hostVeth   string
	octet      int
	allowed    netip.Addr // 198.18.<o>.10, inside AllowedCIDR
	blocked    netip.Addr // 198.19.<o>.10, not allowed
	hostLinkIP netip.Addr // host side of the link: a host address
	tcpPort    int
	udpPort    int
}

func (ti *testInternet) AllowedCIDR() string { return fmt.Sprintf("198.18.%d.0/24", ti.octet) }

func newInternet(t testing.TB) *testInternet {
	t.Helper()
	requireRoot(t)
	r := testkit.RandHex(3)
	ti := &testInternet{ns: "ocnt-" + r, hostVeth: "ocnt" + r, tcpPort: 7001, udpPort: 7002}
	ti.path = NetnsRunDir + "/" + ti.ns
	// Pick a third octet nobody on this host routes yet (other tests may
	// build their own internets in the same range).
	routes := run(t, "ip", "-4", "route", "show", "table", "all")
	for i := 0; ; i++ {
		o := 1 + rand.IntN(250)
		if !strings.Contains(routes, fmt.Sprintf("198.18.%d.", o)) && !strings.Contains(routes, fmt.Sprintf("198.19.%d.", o)) {
			ti.octet = o
			break
		}
		if i > 100 {
			t.Fatal("no free octet in 198.18.0.0/15")
		}
	}
	o := ti.octet
	ti.allowed = netip.MustParseAddr(fmt.Sprintf("198.18.%d.10", o))
	ti.blocked = netip.MustParseAddr(fmt.Sprintf("198.19.%d.10", o))
	ti.hostLinkIP = netip.MustParseAddr(fmt.Sprintf("198.19.%d.249", o))

	t.Cleanup(func() {
		tryRun("ip", "link", "del", ti.hostVeth)
		tryRun("ip", "netns", "del", ti.ns)
	})
	run(t, "ip", "netns", "add", ti.ns)
	run(t, "ip", "link", "add", ti.hostVeth, "type", "veth", "peer", "name", "inet0", "netns", ti.ns)
	run(t, "ip", "addr", "add", fmt.Sprintf("198.19.%d.249/30", o), "dev", ti.hostVeth)
	// No forwarding sysctl here: replies arrive on this interface, and
	// turning forwarding on for it is Ensure's job (like an uplink's).
	run(t, "ip", "link", "set", ti.hostVeth, "up")
	run(t, "ip", "-n", ti.ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ti.ns, "addr", "add", fmt.Sprintf("198.19.%d.250/30", o), "dev", "inet0")
	run(t, "ip", "-n", ti.ns, "link", "set", "inet0", "up")
	run(t, "ip", "-n", ti.ns, "addr", "add", ti.allowed.String()+"/32", "dev", "lo")
	run(t, "ip", "-n", ti.ns, "addr", "add", ti.blocked.String()+"/32", "dev", "lo")
	run(t, "ip", "route", "add", fmt.Sprintf("198.18.%d.0/24", o), "via", fmt.Sprintf("198.19.%d.250", o))
	run(t, "ip", "route", "add", fmt.Sprintf("198.19.%d.0/24", o), "via", fmt.Sprintf("198.19.%d.250", o))

	listenIn(t, ti.path, fmt.Sprintf(":%d", ti.tcpPort))
	// UDP servers bind each address: a wildcard socket would answer from
	// the link address, which conntrack cannot match to the masqueraded flow.
	udpEchoIn(t, ti.path, ti.udp(ti.allowed))
	udpEchoIn(t, ti.path, ti.udp(ti.blocked))
	return ti
}

func (ti *testInternet) tcp(a netip.Addr) string {
	return netip.AddrPortFrom(a, uint16(ti.tcpPort)).String()
}

func (ti *testInternet) udp(a netip.Addr) string {
	return netip.AddrPortFrom(a, uint16(ti.udpPort)).String()
}

// tcpHello dials addr from the netns at path and reads the greeting.
func tcpHello(t testing.TB, path, addr string) error {
	c, err := dialFrom(t, path, "tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("hello")) {
		return fmt.Errorf("read %q, want hello", buf[:n])
	}
	return nil
}

// udpEcho sends one datagram from the netns at path and waits for the echo.
func udpEcho(t testing.TB, path, addr string) error {
	return udpEchoTimeout(t, path, addr, time.Second)
}

func udpEchoTimeout(t testing.TB, path, addr string, timeout time.Duration) error {
	c, err := dialFrom(t, path, "udp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf[:n]) != "ping" {
		return fmt.Errorf("echo %q", buf[:n])
	}
	return nil
}

// kmsg reads new kernel log records from /dev/kmsg. A machine image can
// lack it (a container without /dev/kmsg, or one that forbids reading it):
// then why says so and the log assertions skip, the rest of a test runs.
type kmsg struct {
	fd  int
	why string
}

func openKmsg(t testing.TB) *kmsg {
	t.Helper()
	// Raw fd, not os.File: the Go poller would turn EAGAIN into blocking.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return &kmsg{fd: -1, why: fmt.Sprintf("this machine gives no kernel log to read (open /dev/kmsg: %v)", err)}
	}
	if err != nil {
		t.Fatalf("open /dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &kmsg{fd: fd}
}

// skipUnless skips t when there is no kernel log to check.
func (k *kmsg) skipUnless(t testing.TB) {
	t.Helper()
	if k.fd < 0 {
		t.Skipf("SKIPPED %s: %s", t.Name(), k.why)
	}
}

// lines returns the messages logged since the last call that contain sub.
func (k *kmsg) lines(sub string) []string {
	var out []string
	if k.fd < 0 {
		return nil
	}
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) { // overwritten records: keep reading
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := string(buf[:n])
		// "<pri>,<seq>,<ts>,<flags>;<message>\n<continuation>"
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		rec = strings.SplitN(rec, "\n", 2)[0]
		if strings.Contains(rec, sub) {
			out = append(out, rec)
		}
	}
}

// hostAddrs returns the host's own IPv4 addresses (local delivery only).
func hostAddrs(t testing.TB) []netip.Addr {
	t.Helper()
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		ipn, ok := ifa.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP.To4())
		if ok && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}
