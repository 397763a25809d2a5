package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/ocnix/ocnix/internal/testkit"
)

// dnsInternet is a test internet with an authoritative DNS server for
// made-up zones, at 198.19.<o>.53 inside the internet netns. Every name
// points at an address of that netns (or, on purpose, at loopback, the
// metadata address or a host address), where TCP servers greet on 7001
// and 7003 and UDP echoes on 7002.
type dnsInternet struct {
	*testInternet
	server netip.AddrPort
	wild   netip.Addr // *.wild.test
	cdn    netip.Addr // cname.test -> cdn.elsewhere.test
	moveA  netip.Addr // moving.test, first answer
	moveB  netip.Addr // moving.test, later answers
	short  netip.Addr // short.test: TTL 1, so it lives for the floor only
	other  netip.Addr // any other name below wild.test
	twin   netip.Addr // a.wild.test
	moving atomic.Int32
	zone   map[string][]dns.RR // lower-case FQDN -> answer, for A queries
}

func newDNSInternet(t testing.TB) *dnsInternet {
	t.Helper()
	ti := newInternet(t)
	o := ti.octet
	d := &dnsInternet{
		testInternet: ti,
		server:       netip.MustParseAddrPort(fmt.Sprintf("198.19.%d.53:53", o)),
		wild:         netip.MustParseAddr(fmt.Sprintf("198.18.%d.11", o)),
		cdn:          netip.MustParseAddr(fmt.Sprintf("198.18.%d.12", o)),
		moveA:        netip.MustParseAddr(fmt.Sprintf("198.18.%d.20", o)),
		moveB:        netip.MustParseAddr(fmt.Sprintf("198.18.%d.21", o)),
		short:        netip.MustParseAddr(fmt.Sprintf("198.18.%d.30", o)),
		other:        netip.MustParseAddr(fmt.Sprintf("198.18.%d.40", o)),
		twin:         netip.MustParseAddr(fmt.Sprintf("198.18.%d.41", o)),
	}
	for _, a := range []netip.Addr{d.server.Addr(), d.wild, d.cdn, d.moveA, d.moveB, d.short, d.twin} {
		run(t, "ip", "-n", ti.ns, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	listenIn(t, ti.path, ":7003")
	udpEchoIn(t, ti.path, ti.udp(d.wild))
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	d.zone = map[string][]dns.RR{
		"allowed.test.":          {rr(fmt.Sprintf("allowed.test. 300 IN A %s", ti.allowed))},
		"udp.test.":              {rr(fmt.Sprintf("udp.test. 300 IN A %s", ti.allowed))},
		"short.test.":            {rr(fmt.Sprintf("short.test. 1 IN A %s", d.short))},
		"blocked.test.":          {rr(fmt.Sprintf("blocked.test. 300 IN A %s", ti.blocked))},
		"rebind.test.":           {rr("rebind.test. 300 IN A 127.0.0.1")},
		"meta.test.":             {rr("meta.test. 300 IN A 169.254.169.254")},
		"hostaddr.test.":         {rr(fmt.Sprintf("hostaddr.test. 300 IN A %s", ti.hostLinkIP))},
		"mixed.test.":            {rr(fmt.Sprintf("mixed.test. 300 IN A %s", d.cdn)), rr("mixed.test. 300 IN A 127.0.0.53")},
		"cname.test.":            {rr("cname.test. 300 IN CNAME cdn.elsewhere.test."), rr(fmt.Sprintf("cdn.elsewhere.test. 300 IN A %s", d.cdn)), rr(fmt.Sprintf("injected.test. 300 IN A %s", ti.blocked))},
		"cdn.elsewhere.test.":    {rr(fmt.Sprintf("cdn.elsewhere.test. 300 IN A %s", d.cdn))},
		"long.test.":             {rr(fmt.Sprintf("long.test. 86400 IN A %s", d.cdn))},
		"deep.sub.wild.test.":    {rr(fmt.Sprintf("deep.sub.wild.test. 300 IN A %s", d.wild))},
		"anything.wild.test.":    {rr(fmt.Sprintf("anything.wild.test. 300 IN A %s", d.wild))},
		"a.wild.test.":           {rr(fmt.Sprintf("a.wild.test. 300 IN A %s", d.twin))},
		"wild.test.":             {rr(fmt.Sprintf("wild.test. 300 IN A %s", d.wild))},
		"x.blocked-parent.test.": {rr(fmt.Sprintf("x.blocked-parent.test. 300 IN A %s", d.wild))},
	}
	mux := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		if name == "moving.test." && q.Qtype == dns.TypeA {
			a := d.moveA
			if d.moving.Add(1) > 1 {
				a = d.moveB
			}
			m.Answer = []dns.RR{rr(fmt.Sprintf("moving.test. 300 IN A %s", a))}
		} else if _, ok := d.zone[name]; !ok && strings.HasSuffix(name, ".wild.test.") && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{rr(fmt.Sprintf("%s 300 IN A %s", dns.Fqdn(q.Name), d.other))}
		} else if ans, ok := d.zone[name]; !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Qtype == dns.TypeA {
			m.Answer = ans
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	var err error
	inNS(t, ti.path, func() {
		if pc, err = net.ListenPacket("udp", d.server.String()); err != nil {
			return
		}
		l, err = net.Listen("tcp", d.server.String())
	})
	if err != nil {
		t.Fatalf("authoritative server: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: mux}, {Listener: l, Handler: mux}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return d
}

// startResolver runs RunResolver for p until the test ends.
func startResolver(t testing.TB, p Plan, upstream netip.AddrPort) *testkit.LockedBuffer {
	t.Helper()
	logs := &testkit.LockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- RunResolver(ctx, p, ResolverConfig{
			Upstreams: []netip.AddrPort{upstream},
			Log:       slog.New(slog.NewTextHandler(logs, nil)),
		}, func() { close(ready) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("resolver: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("resolver did not start: %v", err)
	}
	return logs
}

// query asks the resolver from inside the instance netns, as a process
// there would (127.0.0.1:53 is what its resolv.conf names).
func query(t testing.TB, p Plan, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	c, err := dialFrom(t, p.NetnsPath, network, "127.0.0.1:53", 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	cl := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := cl.ExchangeWithConn(m, &dns.Conn{Conn: c})
	return r, err
}

func answerAddrs(m *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		if a := rrAddr(rr); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// mustResolve resolves name from inside the netns and wants exactly want.
func mustResolve(t *testing.T, p Plan, name string, want netip.Addr) {
	t.Helper()
	m, err := query(t, p, "udp", name, dns.TypeA)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	got := answerAddrs(m)
	if m.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != want {
		t.Fatalf("resolve %s: %s %v, want NOERROR [%s]\n%s", name, dns.RcodeToString[m.Rcode], got, want, m)
	}
}

func mustRefuse(t *testing.T, p Plan, name string) {
	t.Helper()
	m, err := query(t, p, "udp", name, dns.TypeA)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	if m.Rcode != dns.RcodeRefused || len(m.Answer) != 0 {
		t.Fatalf("resolve %s: %s with %d answers, want REFUSED and none\n%s", name, dns.RcodeToString[m.Rcode], len(m.Answer), m)
	}
}

func mustBeRejected(t *testing.T, p Plan, addr string) {
	t.Helper()
	err := tcpHello(t, p.NetnsPath, addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect %s: %v, want ECONNREFUSED from the filter", addr, err)
	}
}

func entriesFor(t testing.TB, p Plan, name string) []DNSEntry {
	t.Helper()
	all, err := DNSEntries(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []DNSEntry
	for _, e := range all {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

const testMinTTL = 2 * time.Second

func TestResolverEgressByName(t *testing.T) {
	in := newDNSInternet(t)
	name := testName()
	p := setupInstance(t, Input{
		Instance: name, Enable: true, ListenPort: 8787,
		AllowDomains: []string{"allowed.test:7001", "udp.test:7002", "*.wild.test:7001", "*.wild.test:7002", "rebind.test:7001",
			"meta.test:7001", "hostaddr.test:7001", "mixed.test:7001", "cname.test:7001", "moving.test:7001", "long.test:7001", "short.test:7001"},
		Nameservers: []string{in.server.Addr().String()},
		DNSMinTTL:   testMinTTL,
	})
	allowed := in.tcp(in.allowed)

	// Before the resolver has answered anything, the address is closed:
	// names open addresses, not the other way round.
	t.Run("UnresolvedAddressIsRejected", func(t *testing.T) { mustBeRejected(t, p, allowed) })

	logs := startResolver(t, p, in.server)

	t.Run("ResolvConfNamesOnlyTheResolver", func(t *testing.T) {
		out := run(t, "cat", p.ResolvConf)
		if !strings.Contains(out, "\nnameserver 127.0.0.1\n") || strings.Count(out, "nameserver") != 1 {
			t.Errorf("resolv.conf:\n%s", out)
		}
	})
	t.Run("AllowedNameResolvesAndConnects", func(t *testing.T) {
		mustResolve(t, p, "allowed.test", in.allowed)
		if err := tcpHello(t, p.NetnsPath, allowed); err != nil {
			t.Fatalf("connect %s after resolving allowed.test: %v", allowed, err)
		}
		es := entriesFor(t, p, "allowed.test")
		if len(es) != 1 || es[0].Addr != in.allowed || es[0].Port != 7001 || es[0].Timeout != 300*time.Second {
			t.Errorf("set entries for allowed.test = %v, want %s . 7001 for its TTL of 300s", es, in.allowed)
		}
	})
	t.Run("OnlyTheNamedPort", func(t *testing.T) {
		mustResolve(t, p, "allowed.test", in.allowed)
		mustBeRejected(t, p, netip.AddrPortFrom(in.allowed, 7003).String())
	})
	t.Run("OverTCPToo", func(t *testing.T) {
		m, err := query(t, p, "tcp", "allowed.test", dns.TypeA)
		if err != nil || m.Rcode != dns.RcodeSuccess || len(answerAddrs(m)) != 1 {
			t.Fatalf("TCP query: %v %v", err, m)
		}
	})
	t.Run("UDPDestination", func(t *testing.T) {
		mustResolve(t, p, "udp.test", in.allowed)
		if err := udpEchoTimeout(t, p.NetnsPath, in.udp(in.allowed), 2*time.Second); err != nil {
			t.Fatalf("udp to %s after resolving udp.test: %v", in.udp(in.allowed), err)
		}
	})
	t.Run("BlockedNameRefusedAndLoggedOnce", func(t *testing.T) {
		mustRefuse(t, p, "blocked.test")
		mustRefuse(t, p, "blocked.test")
		mustRefuse(t, p, "x.blocked-parent.test")
		line := LogPrefix(name) + "dns blocked.test."
		if n := strings.Count(logs.String(), line); n != 1 {
			t.Errorf("log has %d lines with %q, want 1:\n%s", n, line, logs)
		}
	})
	t.Run("BlockedAddressUnreachableByIP", func(t *testing.T) { mustBeRejected(t, p, in.tcp(in.blocked)) })
	t.Run("Wildcard", func(t *testing.T) {
		mustResolve(t, p, "anything.wild.test", in.wild)
		mustResolve(t, p, "deep.sub.wild.test", in.wild)
		if err := tcpHello(t, p.NetnsPath, in.tcp(in.wild)); err != nil {
			t.Fatalf("connect %s: %v", in.tcp(in.wild), err)
		}
		if err := udpEchoTimeout(t, p.NetnsPath, in.udp(in.wild), 2*time.Second); err != nil {
			t.Fatalf("udp %s: %v", in.udp(in.wild), err)
		}
		mustRefuse(t, p, "wild.test") // *.wild.test does not cover wild.test itself
	})
	t.Run("LabelWithADotIsNotBelowTheWildcard", func(t *testing.T) {
		// Two labels, "x.wild" and "test", print as x\.wild.test; the
		// test's authoritative server answers every name ending in
		// ".wild.test" as text, so only the resolver stands between the
		// query and the set. Escaped dots by name and by number.
		for _, n := range []string{`x\.wild.test`, `X\.WILD.test`, `x\046wild.test`, `a.b\.wild.test`} {
			mustRefuse(t, p, n)
		}
		all, err := DNSEntries(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if e.Addr == in.other || strings.Contains(e.Name, `\`) {
				t.Errorf("set holds %v after refused names", e)
			}
		}
		if !strings.Contains(logs.String(), LogPrefix(name)+`dns x\\.wild.test.`) {
			t.Errorf("log lacks the refused name:\n%s", logs)
		}
		// The twins: a real name below the suffix resolves, the suffix
		// itself does not.
		mustResolve(t, p, "a.wild.test", in.twin)
		if es := entriesFor(t, p, "a.wild.test"); len(es) != 2 {
			t.Errorf("entries for a.wild.test = %v, want its 7001 and 7002 entries", es)
		}
		mustRefuse(t, p, "wild.test")
	})
	t.Run("LongNameUnderWildcard", func(t *testing.T) {
		long := strings.Repeat(strings.Repeat("x", 60)+".", 3) + strings.Repeat("y", 50) + ".wild.test"
		mustResolve(t, p, long, in.other)
		all, err := DNSEntries(p)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range all {
			if strings.HasPrefix(e.Name, "~") && strings.HasSuffix(e.Name, "y.wild.test") && len(e.Name) == maxCommentLen {
				found = true
			}
		}
		if !found {
			t.Errorf("no entry with the name's tail as comment: %v", all)
		}
	})
	t.Run("RebindingRefused", func(t *testing.T) {
		for _, n := range []string{"rebind.test", "meta.test", "hostaddr.test", "mixed.test"} {
			mustRefuse(t, p, n)
			if es := entriesFor(t, p, n); len(es) != 0 {
				t.Errorf("%s: set holds %v after a refused answer", n, es)
			}
		}
		for _, want := range []string{"dns rebind.test. answered 127.0.0.1", "dns meta.test. answered 169.254.169.254", "dns hostaddr.test. answered " + in.hostLinkIP.String()} {
			if !strings.Contains(logs.String(), LogPrefix(name)+want) {
				t.Errorf("log lacks %q:\n%s", want, logs)
			}
		}
	})
	t.Run("CNAMEChainByQueriedName", func(t *testing.T) {
		m, err := query(t, p, "udp", "cname.test", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if got := answerAddrs(m); len(got) != 1 || got[0] != in.cdn || len(m.Answer) != 2 {
			t.Fatalf("cname.test: %v, want the CNAME and %s only (the injected record dropped)\n%s", got, in.cdn, m)
		}
		if err := tcpHello(t, p.NetnsPath, in.tcp(in.cdn)); err != nil {
			t.Fatalf("connect %s: %v", in.tcp(in.cdn), err)
		}
		mustRefuse(t, p, "cdn.elsewhere.test") // the target is not itself allowed
		if es := entriesFor(t, p, "cname.test"); len(es) != 1 || es[0].Addr != in.cdn {
			t.Errorf("entries for cname.test = %v", es)
		}
	})
	t.Run("AnswersAreCappedAtMaxTTL", func(t *testing.T) {
		m, err := query(t, p, "udp", "long.test", dns.TypeA)
		if err != nil || len(m.Answer) != 1 {
			t.Fatal(err, m)
		}
		if ttl := m.Answer[0].Header().Ttl; ttl != uint32(dnsMaxTTL/time.Second) {
			t.Errorf("long.test TTL = %d, want %d", ttl, dnsMaxTTL/time.Second)
		}
	})
	t.Run("OtherTypesGetNoData", func(t *testing.T) {
		m, err := query(t, p, "udp", "allowed.test", dns.TypeHTTPS)
		if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
			t.Fatalf("HTTPS query: %v %v", err, m)
		}
	})
	t.Run("AddressChangeIsFollowed", func(t *testing.T) {
		mustResolve(t, p, "moving.test", in.moveA)
		mustResolve(t, p, "moving.test", in.moveB)
		if err := tcpHello(t, p.NetnsPath, in.tcp(in.moveB)); err != nil {
			t.Fatalf("connect to the new address %s: %v", in.tcp(in.moveB), err)
		}
	})
	t.Run("ExpiredAddressIsGone", func(t *testing.T) {
		// short.test has TTL 1 and the floor is 2s. Poll rather than sleep
		// a fixed time: under load the kernel still expires it on time,
		// but the test may be slow to look. The element is added after
		// "before", so it cannot expire before before+floor.
		target := in.tcp(in.short)
		before := time.Now()
		mustResolve(t, p, "short.test", in.short)
		if es := entriesFor(t, p, "short.test"); len(es) != 1 || es[0].Timeout != testMinTTL {
			t.Fatalf("entries for short.test = %v, want one with the %v floor (TTL 1s)", es, testMinTTL)
		}
		var err error
		for time.Since(before) < 30*time.Second {
			if err = tcpHello(t, p.NetnsPath, target); err != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect %s after expiry: %v, want ECONNREFUSED", target, err)
		}
		if age := time.Since(before); age < testMinTTL {
			t.Fatalf("address closed after %v, before the %v floor", age, testMinTTL)
		}
		if es := entriesFor(t, p, "short.test"); len(es) != 0 {
			t.Errorf("set still lists %v", es)
		}
		// Resolving again opens it again.
		mustResolve(t, p, "short.test", in.short)
		if es := entriesFor(t, p, "short.test"); len(es) != 1 {
			t.Fatalf("after resolving again: %v", es)
		}
	})
	t.Run("CountersAndStatus", func(t *testing.T) {
		ctr, err := Counters(p)
		if err != nil {
			t.Fatal(err)
		}
		if ctr["dns4-tcp"].Packets == 0 || ctr["dns4-udp"].Packets == 0 {
			t.Errorf("counters dns4-tcp/udp = %v/%v, want > 0", ctr["dns4-tcp"], ctr["dns4-udp"])
		}
		all, err := DNSEntries(p)
		if err != nil || len(all) == 0 {
			t.Fatalf("DNSEntries = %v, %v", all, err)
		}
		for _, e := range all {
			if e.Expires <= 0 || e.Expires > e.Timeout {
				t.Errorf("entry %v: expiry not within its timeout", e)
			}
		}
	})
	t.Run("SetupAgainKeepsWhatIsStillAllowed", func(t *testing.T) {
		mustResolve(t, p, "anything.wild.test", in.wild)
		mustResolve(t, p, "cname.test", in.cdn)
		// A setup with cname.test dropped from the list: the table is
		// replaced; the wildcard's address survives, cname.test's does not.
		in2 := p
		smaller, err := Build(Input{Instance: name, Enable: true, ListenPort: 8787,
			AllowDomains: []string{"*.wild.test:7001"}, Nameservers: []string{in.server.Addr().String()}, DNSMinTTL: testMinTTL}, HostFacts{})
		if err != nil {
			t.Fatal(err)
		}
		if err := Ensure(smaller); err != nil {
			t.Fatal(err)
		}
		if es := entriesFor(t, p, "anything.wild.test"); len(es) != 1 || es[0].Port != 7001 {
			t.Errorf("after setup, anything.wild.test entries = %v, want its 7001 entry kept", es)
		}
		if es := entriesFor(t, p, "cname.test"); len(es) != 0 {
			t.Errorf("after setup without cname.test, its entries = %v, want none", es)
		}
		if err := tcpHello(t, p.NetnsPath, in.tcp(in.wild)); err != nil {
			t.Errorf("connect %s after setup: %v", in.tcp(in.wild), err)
		}
		mustBeRejected(t, p, in.tcp(in.cdn))
		if err := Ensure(in2); err != nil {
			t.Fatal(err)
		}
		// The running resolver writes into the new table.
		mustResolve(t, p, "cname.test", in.cdn)
		if err := tcpHello(t, p.NetnsPath, in.tcp(in.cdn)); err != nil {
			t.Errorf("connect %s after resolving again: %v", in.tcp(in.cdn), err)
		}
	})
}

// TestResolverWithGlibcClient resolves through the netns resolv.conf the
// way any program in the instance does (`ip netns exec` bind-mounts it,
// as the unit's BindReadOnlyPaths= does).
func TestResolverWithGlibcClient(t *testing.T) {
	in := newDNSInternet(t)
	p := setupInstance(t, Input{
		Instance: testName(), Enable: true, ListenPort: 8787,
		AllowDomains: []string{"allowed.test:7001"},
		Nameservers:  []string{in.server.Addr().String()},
	})
	startResolver(t, p, in.server)
	out := run(t, "ip", "netns", "exec", p.Netns, "getent", "ahostsv4", "allowed.test")
	if !strings.HasPrefix(out, in.allowed.String()+" ") {
		t.Errorf("getent ahostsv4 allowed.test:\n%s", out)
	}
	if out, err := runErr("ip", "netns", "exec", p.Netns, "getent", "ahostsv4", "blocked.test"); err == nil {
		t.Errorf("getent blocked.test succeeded:\n%s", out)
	}
}

// TestResolverFailsClosed: with the resolver gone, names do not resolve
// and nothing new enters the sets; a replaced netns ends the resolver.
func TestResolverFailsClosed(t *testing.T) {
	in := newDNSInternet(t)
	p := setupInstance(t, Input{
		Instance: testName(), Enable: true, ListenPort: 8787,
		AllowDomains: []string{"allowed.test:7001"},
		Nameservers:  []string{in.server.Addr().String()},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- RunResolver(ctx, p, ResolverConfig{Upstreams: []netip.AddrPort{in.server}, Log: slog.New(slog.NewTextHandler(&testkit.LockedBuffer{}, nil))}, func() { close(ready) })
	}()
	<-ready
	mustResolve(t, p, "allowed.test", in.allowed)

	// Teardown and setup again: a new netns at the same path.
	if err := Teardown(p); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrNetnsReplaced) {
			t.Fatalf("resolver ended with %v, want ErrNetnsReplaced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("resolver still running 10s after its netns was replaced")
	}
	if _, err := query(t, p, "udp", "allowed.test", dns.TypeA); err == nil {
		t.Fatal("a query got an answer with no resolver running")
	}
	if es, err := DNSEntries(p); err != nil || len(es) != 0 {
		t.Fatalf("new netns sets: %v %v, want empty", es, err)
	}
	mustBeRejected(t, p, in.tcp(in.allowed))
}

// TestDNSSetIsBounded: a set holds at most dnsSetSize elements; the next
// insert fails (and the resolver answers SERVFAIL), kernel memory stays
// bounded whatever a wildcard zone answers.
func TestDNSSetIsBounded(t *testing.T) {
	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowDomains: []string{"*.bound.test"}})
	w, err := OpenSetWriter(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	batch := make([]DNSEntry, 0, 4096)
	for i := range dnsSetSize {
		batch = append(batch, DNSEntry{Addr: netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), Port: 443, Name: "n.bound.test", Timeout: time.Minute})
		if len(batch) == cap(batch) {
			if err := w.Add(batch); err != nil {
				t.Fatalf("insert up to %d: %v", i+1, err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Add([]DNSEntry{{Addr: netip.MustParseAddr("203.1.0.1"), Port: 443, Name: "n.bound.test", Timeout: time.Minute}}); err == nil {
		t.Fatalf("insert %d into a set of size %d succeeded", dnsSetSize+1, dnsSetSize)
	}
	// Refreshing an element that is there still works.
	if err := w.Add([]DNSEntry{{Addr: netip.MustParseAddr("203.0.0.1"), Port: 443, Name: "n.bound.test", Timeout: 2 * time.Minute}}); err != nil {
		t.Errorf("refresh in a full set: %v", err)
	}
	// ... and the kernel takes the new timeout (what a repeated answer
	// relies on to keep a busy name's address open).
	all, err := DNSEntries(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Addr == netip.MustParseAddr("203.0.0.1") && (e.Timeout != 2*time.Minute || e.Expires <= time.Minute) {
			t.Errorf("refreshed element: %v, want timeout 2m and more than 1m left", e)
		}
	}
}

// BenchmarkResolver: one A query answered through the instance's resolver
// (policy check, upstream exchange, set insert) next to the same query
// sent straight to the upstream, in the same run.
func BenchmarkResolver(b *testing.B) {
	in := newDNSInternet(b)
	p := setupInstance(b, Input{
		Instance: testName(), Enable: true, ListenPort: 8787,
		AllowDomains: []string{"*.wild.test:7001"},
		Nameservers:  []string{in.server.Addr().String()},
	})
	startResolver(b, p, in.server)
	bench := func(b *testing.B, path, server string) {
		var c net.Conn
		var err error
		if path == "" {
			c, err = net.Dial("udp", server)
		} else {
			c, err = dialFrom(b, path, "udp", server, time.Second)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conn := &dns.Conn{Conn: c}
		m := new(dns.Msg)
		m.SetQuestion("anything.wild.test.", dns.TypeA)
		cl := &dns.Client{Timeout: 5 * time.Second}
		for b.Loop() {
			r, _, err := cl.ExchangeWithConn(m, conn)
			if err != nil || r.Rcode != dns.RcodeSuccess {
				b.Fatal(err, r)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { bench(b, "", in.server.String()) })
	b.Run("ocnix", func(b *testing.B) { bench(b, p.NetnsPath, "127.0.0.1:53") })
}

// BenchmarkDNSSetInsert: 1 000 names' addresses into the set, in one
// transaction (what a burst of answers costs at most) and one by one
// (what 1 000 separate answers cost).
func BenchmarkDNSSetInsert(b *testing.B) {
	p := setupInstance(b, Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowDomains: []string{"*.bench.test"}})
	w, err := OpenSetWriter(p)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	entries := make([]DNSEntry, 1000)
	for i := range entries {
		entries[i] = DNSEntry{Addr: netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), Port: 443, Name: fmt.Sprintf("n%d.bench.test", i), Timeout: time.Minute}
	}
	b.Run("batch1000", func(b *testing.B) {
		for b.Loop() {
			if err := w.Add(entries); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("single1000", func(b *testing.B) {
		for b.Loop() {
			for _, e := range entries {
				if err := w.Add([]DNSEntry{e}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	if es, err := DNSEntries(p); err != nil || len(es) != 1000 {
		b.Fatalf("set holds %d entries (%v), want 1000", len(es), err)
	}
}
