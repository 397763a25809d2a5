package netpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

func TestEgressAllowedAndBlocked(t *testing.T) {
	ti := newInternet(t)
	name := testName()
	k := openKmsg(t)
	p := setupInstance(t, Input{Instance: name, Enable: true, ListenPort: 8787, AllowCIDRs: []string{ti.AllowedCIDR()}})

	t.Run("TCPToAllowedConnects", func(t *testing.T) {
		if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err != nil {
			t.Fatalf("allowed %s: %v", ti.tcp(ti.allowed), err)
		}
	})
	t.Run("UDPToAllowedEchoes", func(t *testing.T) {
		if err := udpEcho(t, p.NetnsPath, ti.udp(ti.allowed)); err != nil {
			t.Fatalf("allowed udp %s: %v", ti.udp(ti.allowed), err)
		}
	})
	t.Run("TCPToBlockedFailsFast", func(t *testing.T) {
		start := time.Now()
		err := tcpHello(t, p.NetnsPath, ti.tcp(ti.blocked))
		if err == nil {
			t.Fatalf("blocked %s: connected", ti.tcp(ti.blocked))
		}
		// reject with tcp reset: ECONNREFUSED at once, not a timeout.
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
			t.Errorf("blocked %s: got %v after %v, want ECONNREFUSED immediately", ti.tcp(ti.blocked), err, time.Since(start))
		}
	})
	t.Run("UDPToBlockedFails", func(t *testing.T) {
		if err := udpEcho(t, p.NetnsPath, ti.udp(ti.blocked)); err == nil {
			t.Fatalf("blocked udp %s: echoed", ti.udp(ti.blocked))
		}
	})
	t.Run("BlockedAttemptIsLoggedWithPrefix", func(t *testing.T) {
		k.skipUnless(t)
		time.Sleep(200 * time.Millisecond)
		lines := k.lines(LogPrefix(name))
		if len(lines) == 0 {
			t.Fatalf("no kernel log line with prefix %q", LogPrefix(name))
		}
		t.Logf("kernel log: %s", lines[0])
		if !strings.Contains(lines[0], "DST="+ti.blocked.String()) {
			t.Errorf("log line %q does not name DST=%s", lines[0], ti.blocked)
		}
	})
	t.Run("BurstOf1000IsRateLimited", func(t *testing.T) {
		k.skipUnless(t)
		k.lines("") // drain
		start := time.Now()
		connected := 0
		inNS(t, p.NetnsPath, func() {
			for i := 0; i < 1000; i++ {
				if c, err := net.DialTimeout("tcp", ti.tcp(ti.blocked), time.Second); err == nil {
					c.Close()
					connected++
				}
			}
		})
		elapsed := time.Since(start)
		if connected > 0 {
			t.Fatalf("blocked address connected %d times during the burst", connected)
		}
		time.Sleep(300 * time.Millisecond)
		n := len(k.lines(LogPrefix(name)))
		max := logBurst + int(elapsed.Seconds()*logRate) + 2
		t.Logf("1000 blocked attempts in %v: %d log lines (limit %d/s burst %d, allowed up to %d)", elapsed, n, logRate, logBurst, max)
		if n == 0 || n > max {
			t.Errorf("got %d log lines for 1000 attempts in %v, want 1..%d", n, elapsed, max)
		}
		ctr, err := Counters(p)
		if err != nil {
			t.Fatal(err)
		}
		if ctr["blocked-tcp"].Packets < 1000 {
			t.Errorf("counter blocked-tcp = %d packets, want >= 1000", ctr["blocked-tcp"].Packets)
		}
		if ctr["allow4"].Packets == 0 {
			t.Errorf("counter allow4 = 0, want > 0 after the allowed connects")
		}
		t.Logf("counters: %v", ctr)
	})
	t.Run("IPv6FailsFast", func(t *testing.T) {
		_, err := dialFrom(t, p.NetnsPath, "tcp", "[2001:db8::1]:80", time.Second)
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("IPv6 dial: got %v, want ENETUNREACH (IPv6 disabled in the netns)", err)
		}
	})
}

func TestNoReachIntoHost(t *testing.T) {
	ti := newInternet(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})

	// A service on the host on all addresses, and one on loopback only.
	all, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	go serveHello(all)
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	go serveHello(lo)
	allPort := all.Addr().(*net.TCPAddr).Port
	loPort := lo.Addr().(*net.TCPAddr).Port

	// Sanity: the host service answers on the veth address from the host.
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(p.HostAddr.Addr(), uint16(allPort)).String(), time.Second); err != nil {
		t.Fatalf("host service not reachable from the host itself: %v", err)
	} else {
		c.Close()
	}

	targets := []string{
		netip.AddrPortFrom(p.HostAddr.Addr(), uint16(allPort)).String(), // the veth peer
		netip.AddrPortFrom(ti.hostLinkIP, uint16(allPort)).String(),     // another host address
		netip.AddrPortFrom(p.HostAddr.Addr(), uint16(loPort)).String(),  // loopback-only service via the veth
		fmt.Sprintf("127.0.0.1:%d", loPort),                             // the netns's own loopback
	}
	for _, a := range hostAddrs(t) {
		if !a.IsLoopback() {
			targets = append(targets, netip.AddrPortFrom(a, uint16(allPort)).String())
		}
	}
	for _, tgt := range targets {
		if err := tcpHello(t, p.NetnsPath, tgt); err == nil {
			t.Errorf("instance reached host service at %s", tgt)
		}
	}
}

func TestSecondInstanceUnreachable(t *testing.T) {
	requireRoot(t)
	a := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787})
	b := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787})
	listenIn(t, b.NetnsPath, ":8787")
	bAddr := netip.AddrPortFrom(b.PeerAddr.Addr(), 8787).String()
	// Sanity: the host reaches B's port (input allows the listen port).
	if c, err := net.DialTimeout("tcp", bAddr, time.Second); err != nil {
		t.Fatalf("host cannot reach instance B at %s: %v", bAddr, err)
	} else {
		c.Close()
	}
	if err := tcpHello(t, a.NetnsPath, bAddr); err == nil {
		t.Errorf("instance A reached instance B at %s", bAddr)
	}
	hostB := netip.AddrPortFrom(b.HostAddr.Addr(), 8787).String()
	if err := tcpHello(t, a.NetnsPath, hostB); err == nil {
		t.Errorf("instance A reached the host side of B's veth at %s", hostB)
	}
}

func TestDiagnoseFindsMissingUplinkForwarding(t *testing.T) {
	ti := newInternet(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})
	if d := Diagnose(p); len(d) != 0 {
		t.Errorf("Diagnose on a working setup: %q", d)
	}
	fwd := "/proc/sys/net/ipv4/conf/" + ti.hostVeth + "/forwarding"
	if err := os.WriteFile(fwd, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := Diagnose(p)
	if len(d) != 1 || !strings.Contains(d[0], ti.hostVeth) {
		t.Errorf("Diagnose with forwarding off on %s: %q", ti.hostVeth, d)
	}
	// And it really matters: allowed traffic no longer works.
	if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err == nil {
		t.Errorf("allowed connect worked without forwarding on the reply interface; doc.go is wrong")
	}
	os.WriteFile(fwd, []byte("1"), 0o644)
	if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err != nil {
		t.Errorf("allowed connect after re-enabling forwarding: %v", err)
	}
}

// TestBigAllowListWorks loads 10 000 allowed /32s (plus the test
// internet's host) and checks the kernel set really decides: the allowed
// host connects, the blocked one does not, and setup stays fast.
func TestBigAllowListWorks(t *testing.T) {
	ti := newInternet(t)
	cidrs := append(cidrs10k(), ti.allowed.String()+"/32")
	p, err := Build(Input{Instance: testName(), Enable: true, AllowCIDRs: cidrs}, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupPlan(t, p) })
	start := time.Now()
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure with %d intervals: %v", len(p.Allow4), time.Since(start))
	if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err != nil {
		t.Errorf("allowed host in a 10k list: %v", err)
	}
	if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.blocked)); err == nil {
		t.Errorf("blocked host connected with a 10k list")
	}
	// The kernel holds exactly the planned set: no truncation, no
	// open-ended tail.
	norm := func(s string) string {
		return strings.Join(strings.Fields(counterRE.ReplaceAllString(s, "counter")), " ")
	}
	got := run(t, "ip", "netns", "exec", p.Netns, "nft", "list", "table", "inet", FilterTable)
	if norm(got) != norm(p.Filter.String()) {
		t.Errorf("kernel set differs from the plan; kernel tail: %s", got[max(0, len(got)-400):])
	}
}

func TestSubnetChangeConverges(t *testing.T) {
	ti := newInternet(t)
	in := Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}}
	p := setupInstance(t, in)
	// Another free /30: the pool slot of a name nobody uses.
	in.Subnet = PoolSubnet("unused-" + testkit.RandHex(8)).String()
	q, err := Build(in, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(q); err != nil {
		t.Fatal(err)
	}
	out := run(t, "ip", "-n", q.Netns, "-4", "addr", "show", "dev", PeerVeth)
	if !strings.Contains(out, q.PeerAddr.String()) || strings.Contains(out, p.PeerAddr.String()) {
		t.Errorf("after subnet change, netns addresses:\n%s", out)
	}
	if out := run(t, "ip", "-4", "route"); strings.Contains(out, p.Subnet.String()) {
		t.Errorf("old subnet %s still routed on the host:\n%s", p.Subnet, out)
	}
	if err := tcpHello(t, q.NetnsPath, ti.tcp(ti.allowed)); err != nil {
		t.Errorf("allowed connect after subnet change: %v", err)
	}
}

// TestListenPortOnlyFromHostSide: over the veth, the listen port answers
// the host itself but not traffic the host merely forwards.
func TestListenPortOnlyFromHostSide(t *testing.T) {
	ti := newInternet(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787})
	listenIn(t, p.NetnsPath, ":8787")
	target := netip.AddrPortFrom(p.PeerAddr.Addr(), 8787).String()
	if c, err := net.DialTimeout("tcp", target, time.Second); err != nil {
		t.Fatalf("host to %s: %v", target, err)
	} else {
		c.Close()
	}
	// From the test internet, routed through the host as a LAN would be on
	// a host that forwards on purpose.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+ti.hostVeth+"/forwarding", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", ti.ns, "route", "add", p.Subnet.String(), "via", ti.hostLinkIP.String())
	if err := tcpHello(t, ti.path, target); err == nil {
		t.Errorf("forwarded traffic from the test internet reached the server at %s", target)
	}
}
