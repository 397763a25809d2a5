package netpolicy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostForwardingOff puts the host in the state of a fresh one (testkit.HostForwardingOff).
func hostForwardingOff(t testing.TB) {
	t.Helper()
	requireRoot(t)
	testkit.HostForwardingOff(t)
}

func writeProc(t testing.TB, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fwdPath(dev string) string { return "/proc/sys/net/ipv4/conf/" + dev + "/forwarding" }

// routeBetween lets a and b reach each other's servers through the host,
// as a LAN and a WAN behind a router would: each gets routes to the
// other's addresses via its host-side link address.
func routeBetween(t testing.TB, a, b *testInternet) {
	t.Helper()
	for _, x := range [][2]*testInternet{{a, b}, {b, a}} {
		from, to := x[0], x[1]
		run(t, "ip", "-n", from.ns, "route", "add", to.AllowedCIDR(), "via", from.hostLinkIP.String())
		run(t, "ip", "-n", from.ns, "route", "add", fmt.Sprintf("198.19.%d.248/30", to.octet), "via", from.hostLinkIP.String())
	}
}

// serveDNS runs a small authoritative server for ocnix.test. on
// 0.0.0.0:53 inside the test net: a wildcard socket on a host with
// several addresses, as real resolvers are, answering from the address
// it was asked on (miekg/dns uses IP_PKTINFO for that).
func serveDNS(t testing.TB, ti *testInternet, answer netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNS(t, ti.path, func() { pc, err = net.ListenPacket("udp4", "0.0.0.0:53") })
	if err != nil {
		t.Fatalf("listen udp :53 in %s: %v", ti.ns, err)
	}
	testkit.ServeA(t, pc, "ocnix.test.", answer.String())
}

// dnsQuery asks server (ip:port) for name's A record over UDP from inside
// the netns at path.
func dnsQuery(t testing.TB, path, server, name string) (netip.Addr, error) {
	var in *dns.Msg
	var err error
	inNS(t, path, func() {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		in, _, err = c.Exchange(m, server)
	})
	if err != nil {
		return netip.Addr{}, err
	}
	if in.Truncated || len(in.Answer) != 1 {
		return netip.Addr{}, fmt.Errorf("answer %v (truncated %v)", in.Answer, in.Truncated)
	}
	a, ok := in.Answer[0].(*dns.A)
	if !ok {
		return netip.Addr{}, fmt.Errorf("answer %v is not an A record", in.Answer[0])
	}
	addr, _ := netip.AddrFromSlice(a.A.To4())
	return addr, nil
}

// nameserverOf returns the first nameserver in the netns resolv.conf.
func nameserverOf(t testing.TB, p Plan) string {
	t.Helper()
	b, err := os.ReadFile(p.ResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "nameserver" {
			return f[1]
		}
	}
	t.Fatalf("no nameserver in %s:\n%s", p.ResolvConf, b)
	return ""
}

// TestFreshHostForwarding starts from a host that forwards nothing and
// checks the whole model: setup makes the instance reach its allowed
// addresses over TCP and UDP (a real DNS exchange) and not its blocked
// ones, turns forwarding on only on the interfaces that replies arrive
// on, lets the host route nothing else, and the last teardown puts the
// sysctls back.
func TestFreshHostForwarding(t *testing.T) {
	hostForwardingOff(t)
	wan := newInternet(t)
	lan := newInternet(t)
	routeBetween(t, lan, wan)
	serveDNS(t, wan, wan.allowed)
	name := testName()
	p := setupInstance(t, Input{
		Instance: name, Enable: true, ListenPort: 8787,
		AllowCIDRs:  []string{wan.AllowedCIDR(), lan.AllowedCIDR()},
		Nameservers: []string{wan.allowed.String()},
	})

	t.Run("OnlyTheReplyInterfacesForward", func(t *testing.T) {
		for _, dev := range []string{p.HostVeth, wan.hostVeth, lan.hostVeth} {
			if v := testkit.ReadProc(t, fwdPath(dev)); v != "1" {
				t.Errorf("forwarding on %s = %s, want 1", dev, v)
			}
		}
		// Everything else stays off: all, default, and the host's real
		// uplink too, because no allowed address routes through it.
		paths, _ := filepath.Glob("/proc/sys/net/ipv4/conf/*/forwarding")
		for _, f := range paths {
			dev := filepath.Base(filepath.Dir(f))
			if dev == p.HostVeth || dev == wan.hostVeth || dev == lan.hostVeth {
				continue
			}
			if v := testkit.ReadProc(t, f); v != "0" {
				t.Errorf("%s = %s: setup turned on forwarding where no reply arrives", f, v)
			}
		}
		st, err := readForwardState()
		if err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{wan.hostVeth, lan.hostVeth} {
			if !strings.Contains(strings.Join(st.Enabled, " "), dev) {
				t.Errorf("record %s = %v, want %s in it", ForwardStateFile, st.Enabled, dev)
			}
		}
		if d := Diagnose(p); len(d) != 0 {
			t.Errorf("Diagnose on a working fresh host: %q", d)
		}
		// The kernel holds what explain shows (the "oc-*" wildcard too).
		norm := func(s string) string {
			return strings.Join(strings.Fields(counterRE.ReplaceAllString(s, "counter")), " ")
		}
		ls, err := readListeners()
		if err != nil {
			t.Fatal(err)
		}
		want := SharedTable(st.Enabled, ls).String()
		if got := run(t, "nft", "list", "table", "inet", ForwardTableName); norm(got) != norm(want) {
			t.Errorf("kernel forward table:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("TCPToAllowedConnects", func(t *testing.T) {
		for _, a := range []string{wan.tcp(wan.allowed), lan.tcp(lan.allowed)} {
			if err := tcpHello(t, p.NetnsPath, a); err != nil {
				t.Errorf("allowed %s: %v", a, err)
			}
		}
	})
	t.Run("DNSOverUDPToAllowedResolver", func(t *testing.T) {
		ns := nameserverOf(t, p)
		if ns != wan.allowed.String() {
			t.Fatalf("resolv.conf nameserver %s, want %s", ns, wan.allowed)
		}
		got, err := dnsQuery(t, p.NetnsPath, net.JoinHostPort(ns, "53"), "api.ocnix.test")
		if err != nil || got != wan.allowed {
			t.Fatalf("DNS A api.ocnix.test via %s: %v, %v; want %s", ns, got, err, wan.allowed)
		}
	})
	t.Run("UDPEchoToAllowed", func(t *testing.T) {
		if err := udpEcho(t, p.NetnsPath, wan.udp(wan.allowed)); err != nil {
			t.Errorf("allowed udp %s: %v", wan.udp(wan.allowed), err)
		}
	})
	t.Run("UDPToBlockedIsRefused", func(t *testing.T) {
		// The same server answers on the blocked address (twin below).
		blocked := net.JoinHostPort(wan.blocked.String(), "53")
		start := time.Now()
		_, err := dnsQuery(t, p.NetnsPath, blocked, "api.ocnix.test")
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) || time.Since(start) > time.Second {
			t.Errorf("DNS to blocked %s: %v after %v, want an immediate refusal", blocked, err, time.Since(start))
		}
		if got, err := dnsQuery(t, wan.path, blocked, "api.ocnix.test"); err != nil || got != wan.allowed {
			t.Errorf("twin: DNS to %s from inside the test net: %v, %v", blocked, got, err)
		}
	})
	t.Run("HostRoutesNothingElse", func(t *testing.T) {
		for _, c := range []struct{ from, to *testInternet }{{lan, wan}, {wan, lan}} {
			if err := tcpHello(t, c.from.path, c.to.tcp(c.to.allowed)); err == nil {
				t.Errorf("%s reached %s through the host", c.from.ns, c.to.tcp(c.to.allowed))
			}
			if err := udpEchoTimeout(t, c.from.path, c.to.udp(c.to.allowed), 300*time.Millisecond); err == nil {
				t.Errorf("%s reached %s over UDP through the host", c.from.ns, c.to.udp(c.to.allowed))
			}
		}
		// Nor into the instance from a network that now has forwarding on.
		run(t, "ip", "-n", wan.ns, "route", "add", p.Subnet.String(), "via", wan.hostLinkIP.String())
		listenIn(t, p.NetnsPath, ":8787")
		if err := tcpHello(t, wan.path, netip.AddrPortFrom(p.PeerAddr.Addr(), 8787).String()); err == nil {
			t.Errorf("%s reached the instance's server through the host", wan.ns)
		}
	})
	t.Run("TwinWithoutOurForwardTableTheHostRoutes", func(t *testing.T) {
		// What the drop rules hold back, and what a host `nft flush
		// ruleset` opens until the next setup: lan reaches wan.
		if err := deleteTable(ForwardTable(nil), -1); err != nil {
			t.Fatal(err)
		}
		if err := tcpHello(t, lan.path, wan.tcp(wan.allowed)); err != nil {
			t.Errorf("twin: without the forward table lan did not reach wan (%v): the negative test proves nothing", err)
		}
		if d := strings.Join(Diagnose(p), "\n"); !strings.Contains(d, "not guarded") {
			t.Errorf("Diagnose without the forward table: %q, want a warning", d)
		}
		if err := Ensure(p); err != nil {
			t.Fatal(err)
		}
		if err := tcpHello(t, lan.path, wan.tcp(wan.allowed)); err == nil {
			t.Errorf("after setup again lan still reaches wan")
		}
		if err := tcpHello(t, p.NetnsPath, wan.tcp(wan.allowed)); err != nil {
			t.Errorf("after setup again the instance cannot reach wan: %v", err)
		}
	})
	t.Run("LastTeardownRestores", func(t *testing.T) {
		if err := Teardown(p); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{wan.hostVeth, lan.hostVeth} {
			if v := testkit.ReadProc(t, fwdPath(dev)); v != "0" {
				t.Errorf("after the last teardown forwarding on %s = %s, want 0 again", dev, v)
			}
		}
		if _, err := os.Stat(ForwardStateFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after the last teardown %s: %v, want it gone", ForwardStateFile, err)
		}
		if out := run(t, "nft", "list", "tables"); strings.Contains(out, "inet "+ForwardTableName+"\n") {
			t.Errorf("after the last teardown the forward table is still there:\n%s", out)
		}
	})
}

// TestForwardingStaysWhileAnotherInstanceNeedsIt: tearing down one of two
// instances keeps the forwarding and the drop rules the other needs.
func TestForwardingStaysWhileAnotherInstanceNeedsIt(t *testing.T) {
	hostForwardingOff(t)
	wan := newInternet(t)
	in := func() Input {
		return Input{Instance: testName(), Enable: true, AllowCIDRs: []string{wan.AllowedCIDR()}}
	}
	a := setupInstance(t, in())
	b := setupInstance(t, in())
	if err := Teardown(a); err != nil {
		t.Fatal(err)
	}
	if v := testkit.ReadProc(t, fwdPath(wan.hostVeth)); v != "1" {
		t.Errorf("forwarding on %s = %s after the first of two teardowns, want 1", wan.hostVeth, v)
	}
	if err := tcpHello(t, b.NetnsPath, wan.tcp(wan.allowed)); err != nil {
		t.Errorf("the remaining instance lost egress: %v", err)
	}
	if err := Teardown(b); err != nil {
		t.Fatal(err)
	}
	if v := testkit.ReadProc(t, fwdPath(wan.hostVeth)); v != "0" {
		t.Errorf("forwarding on %s = %s after the last teardown, want 0", wan.hostVeth, v)
	}
}

// TestHostThatForwardsOnPurposeKeepsForwarding: on a router (ip_forward=1)
// setup records nothing, drops nothing of the host's own routing, and
// teardown switches nothing off.
func TestHostThatForwardsOnPurposeKeepsForwarding(t *testing.T) {
	hostForwardingOff(t)
	wan := newInternet(t)
	lan := newInternet(t)
	routeBetween(t, lan, wan)
	writeProc(t, testkit.AllForwarding, "1") // the operator's decision
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{wan.AllowedCIDR()}})
	if err := tcpHello(t, p.NetnsPath, wan.tcp(wan.allowed)); err != nil {
		t.Errorf("instance to wan: %v", err)
	}
	if err := tcpHello(t, lan.path, wan.tcp(wan.allowed)); err != nil {
		t.Errorf("the host's own routing lan -> wan broke after setup: %v", err)
	}
	if st, err := readForwardState(); err != nil || len(st.Enabled) != 0 {
		t.Errorf("record on a router = %v, %v; want nothing enabled by ocnix", st.Enabled, err)
	}
	if err := Teardown(p); err != nil {
		t.Fatal(err)
	}
	if v := testkit.ReadProc(t, testkit.AllForwarding); v != "1" {
		t.Errorf("teardown switched the router's forwarding off: all.forwarding = %s", v)
	}
	if err := tcpHello(t, lan.path, wan.tcp(wan.allowed)); err != nil {
		t.Errorf("the host's own routing lan -> wan broke after teardown: %v", err)
	}
}

func TestServesSomeOf(t *testing.T) {
	route := func(cidr string) v4route {
		r := netlink.Route{Type: unix.RTN_UNICAST}
		if cidr != "default" {
			_, n, err := net.ParseCIDR(cidr)
			if err != nil {
				t.Fatal(err)
			}
			r.Dst = n
		}
		vr, ok := toV4route(r)
		if !ok {
			t.Fatal(cidr)
		}
		return vr
	}
	allow := func(cidrs ...string) []Interval {
		a4, _, err := MergeCIDRs(cidrs)
		if err != nil {
			t.Fatal(err)
		}
		return a4
	}
	table := []v4route{route("default"), route("10.1.0.0/24"), route("10.1.1.0/24"), route("192.168.0.0/16")}
	tests := []struct {
		route string
		allow []Interval
		want  bool
	}{
		{"default", allow("10.1.0.0/24"), false},                 // a more specific route covers it all
		{"default", allow("10.1.0.0/23"), false},                 // two adjacent ones do too
		{"default", allow("10.1.0.0/22"), true},                  // 10.1.2.0-10.1.3.255 goes via default
		{"default", allow("0.0.0.0/0"), true},                    // allow everything: the uplink
		{"default", allow("255.255.255.255/32"), true},           // top of the range, no overflow
		{"10.1.0.0/24", allow("10.1.0.7/32"), true},              // the longest match itself
		{"10.1.0.0/24", allow("10.2.0.0/16"), false},             // no overlap
		{"192.168.0.0/16", allow("192.168.5.0/24"), true},        // inside it
		{"10.1.1.0/24", allow("10.0.0.0/8", "11.0.0.0/8"), true}, // merged interval
	}
	for _, tt := range tests {
		if got := servesSomeOf(route(tt.route), table, tt.allow); got != tt.want {
			t.Errorf("servesSomeOf(%s, %v) = %v, want %v", tt.route, tt.allow, got, tt.want)
		}
	}
	if r := route("0.0.0.0/0"); r.first != 0 || r.last != math.MaxUint32 {
		t.Errorf("0.0.0.0/0 = %d-%d", r.first, r.last)
	}
	if r := route("10.1.0.9/32"); r.first != r.last {
		t.Errorf("/32 = %d-%d", r.first, r.last)
	}
}

// TestNixOSFilterForward reproduces the forward chain NixOS's nftables
// firewall makes with networking.firewall.filterForward = true: no
// priority of ours can accept past its drop, Diagnose names it, and the
// documented extraForwardRules line makes instance egress work while the
// host still routes nothing else.
func TestNixOSFilterForward(t *testing.T) {
	hostForwardingOff(t)
	wan := newInternet(t)
	lan := newInternet(t)
	routeBetween(t, lan, wan)
	const fw = "ocnix-test-nixos-fw"
	load := func(extraForwardRules string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "fw.nft")
		// What nixos/modules/services/networking/firewall-nftables.nix emits.
		rules := fmt.Sprintf(`table inet %s {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state vmap { invalid : drop, established : accept, related : accept, new : jump forward-allow, untracked : jump forward-allow }
	}
	chain forward-allow {
		icmpv6 type != { router-renumbering, 139 } accept
		ct status dnat accept comment "allow port forward"
		%s
	}
}
`, fw, extraForwardRules)
		tryRun("nft", "delete", "table", "inet", fw)
		if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "nft", "-f", f)
	}
	t.Cleanup(func() { tryRun("nft", "delete", "table", "inet", fw) })
	load("")
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{wan.AllowedCIDR(), lan.AllowedCIDR()}})

	if err := tcpHello(t, p.NetnsPath, wan.tcp(wan.allowed)); err == nil {
		t.Errorf("instance egress passed a foreign forward chain with policy drop: doc.go says it cannot")
	}
	if d := strings.Join(Diagnose(p), "\n"); !strings.Contains(d, "inet "+fw+" chain forward") || !strings.Contains(d, `extraForwardRules = ''iifname "oc-*" accept''`) {
		t.Errorf("Diagnose does not name the dropping chain and the fix: %q", d)
	}

	load(`iifname "oc-*" accept`)
	if err := tcpHello(t, p.NetnsPath, wan.tcp(wan.allowed)); err != nil {
		t.Errorf("with the documented extraForwardRules, instance egress: %v", err)
	}
	if err := udpEcho(t, p.NetnsPath, wan.udp(wan.allowed)); err != nil {
		t.Errorf("with the documented extraForwardRules, UDP: %v", err)
	}
	if err := tcpHello(t, lan.path, wan.tcp(wan.allowed)); err == nil {
		t.Errorf("lan reached wan through the host")
	}
}
