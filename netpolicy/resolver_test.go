package netpolicy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests need no root: the upstream is a real DNS server on the
// loopback of the test's own network namespace, and the sets are a
// recorder. resolver_linux_test.go runs the same resolver against the
// kernel.

type recordSets struct {
	mu  sync.Mutex
	got []DNSEntry
	err error
}

func (r *recordSets) Add(es []DNSEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, es...)
	return nil
}

// loopbackUpstream serves zone (lower-case FQDN -> answer records in
// zone-file syntax) on a free UDP port of 127.0.0.1.
func loopbackUpstream(t *testing.T, zone map[string][]string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		recs, ok := zone[strings.ToLower(req.Question[0].Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, s := range recs {
			rr, err := dns.NewRR(s)
			if err != nil {
				panic(err)
			}
			if rr.Header().Rrtype == req.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func testResolver(t *testing.T, domains []string, zone map[string][]string) (*Resolver, *recordSets, *bytes.Buffer) {
	t.Helper()
	p, err := Build(Input{Instance: "unit", Enable: true, ListenPort: 4096, AllowDomains: domains, Subnet: "10.99.0.4/30"}, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	sets := &recordSets{}
	logs := &bytes.Buffer{}
	r, err := NewResolver(p, ResolverConfig{
		Upstreams: []netip.AddrPort{loopbackUpstream(t, zone)},
		Sets:      sets,
		Log:       slog.New(slog.NewTextHandler(logs, nil)),
		Guard: func(a netip.Addr) string {
			if a == netip.MustParseAddr("192.0.2.99") {
				return "an address of this host (eth0)"
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, sets, logs
}

func ask(r *Resolver, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return r.Answer(m)
}

func TestResolverAnswer(t *testing.T) {
	zone := map[string][]string{
		"api.example.com.":    {"api.example.com. 5 IN A 192.0.2.1", "api.example.com. 5 IN A 192.0.2.2"},
		"cdn.example.com.":    {"cdn.example.com. 300 IN CNAME edge.cdn.test.", "edge.cdn.test. 30 IN CNAME e1.cdn.test.", "e1.cdn.test. 7200 IN A 192.0.2.3", "other.test. 300 IN A 192.0.2.66"},
		"loop.example.com.":   {"loop.example.com. 300 IN CNAME loop.example.com."},
		"rebind.example.com.": {"rebind.example.com. 300 IN A 192.0.2.4", "rebind.example.com. 300 IN A 127.0.0.1"},
		"meta.example.com.":   {"meta.example.com. 300 IN A 169.254.169.254"},
		"pool.example.com.":   {"pool.example.com. 300 IN A 100.64.0.2"},
		"subnet.example.com.": {"subnet.example.com. 300 IN A 10.99.0.6"},
		"host.example.com.":   {"host.example.com. 300 IN A 192.0.2.99"},
		"mapped.example.com.": {"mapped.example.com. 300 IN AAAA ::ffff:127.0.0.1"},
		"v6.example.com.":     {"v6.example.com. 300 IN AAAA 2001:db8::1"},
		"x.wild.example.":     {"x.wild.example. 300 IN A 192.0.2.5"},
	}
	r, sets, logs := testResolver(t, []string{"api.example.com", "cdn.example.com:8443", "*.example.com:22", "loop.example.com", "*.wild.example"}, zone)

	t.Run("AllowedNameAllPortsAndFloor", func(t *testing.T) {
		sets.got = nil
		m := ask(r, "API.example.com", dns.TypeA)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
			t.Fatalf("%v", m)
		}
		var got []string
		for _, e := range sets.got {
			got = append(got, fmt.Sprintf("%s %s.%d %s", e.Name, e.Addr, e.Port, e.Timeout))
		}
		want := "api.example.com 192.0.2.1.22 1m0s|api.example.com 192.0.2.1.80 1m0s|api.example.com 192.0.2.1.443 1m0s|" +
			"api.example.com 192.0.2.2.22 1m0s|api.example.com 192.0.2.2.80 1m0s|api.example.com 192.0.2.2.443 1m0s"
		if strings.Join(got, "|") != want {
			t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "|"), want)
		}
	})
	t.Run("CNAMEChainIsFollowedAndStrangersDropped", func(t *testing.T) {
		sets.got = nil
		m := ask(r, "cdn.example.com", dns.TypeA)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 3 {
			t.Fatalf("want the two CNAMEs and e1's A only:\n%v", m)
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl > uint32(dnsMaxTTL/time.Second) {
				t.Errorf("TTL %d above the cap", rr.Header().Ttl)
			}
		}
		if len(sets.got) != 2 || sets.got[0].Addr != netip.MustParseAddr("192.0.2.3") || sets.got[0].Timeout != dnsMaxTTL {
			t.Errorf("entries = %v, want 192.0.2.3 on 22 and 8443 for the 1h cap", sets.got)
		}
	})
	t.Run("CNAMELoopGivesNoAddress", func(t *testing.T) {
		sets.got = nil
		if m := ask(r, "loop.example.com", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(sets.got) != 0 {
			t.Errorf("%v, entries %v", m, sets.got)
		}
	})
	t.Run("RefusedAnswers", func(t *testing.T) {
		for _, n := range []string{"rebind.example.com", "meta.example.com", "pool.example.com", "subnet.example.com", "host.example.com"} {
			sets.got = nil
			if m := ask(r, n, dns.TypeA); m.Rcode != dns.RcodeRefused || len(m.Answer) != 0 || len(sets.got) != 0 {
				t.Errorf("%s: %v, entries %v; want REFUSED and nothing added", n, m, sets.got)
			}
		}
		if m := ask(r, "mapped.example.com", dns.TypeAAAA); m.Rcode != dns.RcodeRefused {
			t.Errorf("::ffff:127.0.0.1: %v, want REFUSED", m)
		}
		for _, want := range []string{"loopback 127.0.0.0/8", "169.254.169.254", "instance address pool", "this instance's subnet 10.99.0.4/30", "an address of this host"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs)
			}
		}
	})
	t.Run("AAAAGoesToTheSameRules", func(t *testing.T) {
		sets.got = nil
		if m := ask(r, "v6.example.com", dns.TypeAAAA); m.Rcode != dns.RcodeSuccess || len(sets.got) != 1 || sets.got[0].Port != 22 {
			t.Errorf("%v, entries %v", m, sets.got)
		}
	})
	t.Run("NotAllowed", func(t *testing.T) {
		for _, n := range []string{"example.com", "wild.example", "api.example.com.evil.test", "evil.test"} {
			if m := ask(r, n, dns.TypeA); m.Rcode != dns.RcodeRefused {
				t.Errorf("%s: %s, want REFUSED", n, dns.RcodeToString[m.Rcode])
			}
		}
		if !strings.Contains(logs.String(), "opencode-unit-blocked: dns evil.test.") {
			t.Errorf("log:\n%s", logs)
		}
	})
	t.Run("UpstreamNXDOMAINPassesThrough", func(t *testing.T) {
		if m := ask(r, "nothing.wild.example", dns.TypeA); m.Rcode != dns.RcodeNameError {
			t.Errorf("%s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("OtherTypesNoData", func(t *testing.T) {
		if m := ask(r, "x.wild.example", dns.TypeHTTPS); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
			t.Errorf("%v", m)
		}
	})
	t.Run("SetFailureIsSERVFAIL", func(t *testing.T) {
		sets.err = fmt.Errorf("netlink says no")
		defer func() { sets.err = nil }()
		if m := ask(r, "x.wild.example", dns.TypeA); m.Rcode != dns.RcodeServerFailure || len(m.Answer) != 0 {
			t.Errorf("%v, want SERVFAIL without answers", m)
		}
	})
	t.Run("NotAQuery", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("x.wild.example.", dns.TypeA)
		m.Opcode = dns.OpcodeStatus
		if got := r.Answer(m); got.Rcode != dns.RcodeNotImplemented {
			t.Errorf("%v", got)
		}
		m.Opcode = dns.OpcodeQuery
		m.Question = append(m.Question, m.Question[0])
		if got := r.Answer(m); got.Rcode != dns.RcodeFormatError {
			t.Errorf("%v", got)
		}
	})
}

func TestResolverNoUpstreamAnswersSERVFAIL(t *testing.T) {
	p, err := Build(Input{Instance: "unit", Enable: true, ListenPort: 4096, AllowDomains: []string{"a.example.com"}}, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on: the exchange fails (connection refused).
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	r, err := NewResolver(p, ResolverConfig{Upstreams: []netip.AddrPort{dead}, Sets: &recordSets{}, Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), UpstreamTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m := ask(r, "a.example.com", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("%s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if _, err := NewResolver(p, ResolverConfig{Sets: &recordSets{}, Log: slog.Default()}); err == nil || !strings.Contains(err.Error(), "nameservers") {
		t.Errorf("no upstreams: %v", err)
	}
}

func TestOnceLog(t *testing.T) {
	now := time.Unix(0, 0)
	o := newOnceLog(5, 10, 100)
	o.now = func() time.Time { return now }
	if ok, _ := o.allow("a"); !ok {
		t.Fatal("first a refused")
	}
	if ok, _ := o.allow("a"); ok {
		t.Fatal("second a allowed: once per name")
	}
	n := 1
	for i := range 100 {
		if ok, _ := o.allow(fmt.Sprint("n", i)); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("burst: %d lines, want 10", n)
	}
	now = now.Add(time.Second)
	ok, suppressed := o.allow("late")
	if !ok || suppressed != 91 {
		t.Errorf("after 1s: ok=%v suppressed=%d, want true and 91", ok, suppressed)
	}
	// Names dropped by the rate limit are not remembered: they log later.
	if ok, _ := o.allow("n50"); !ok {
		t.Errorf("a name suppressed by the rate limit is never logged")
	}
	// The empty key is rate-limited only.
	now = now.Add(time.Hour)
	n = 0
	for range 100 {
		if ok, _ := o.allow(""); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("empty key: %d of 100 through, want the burst of 10", n)
	}
}

func TestDNSKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "2001:db8::1"} {
		a := netip.MustParseAddr(s)
		k := dnsKey(a, 443)
		if len(k)%4 != 0 {
			t.Errorf("%s: key length %d is not whole registers", s, len(k))
		}
		got, port, ok := parseDNSKey(k)
		if !ok || got != a || port != 443 {
			t.Errorf("%s: round trip gave %s %d %v", s, got, port, ok)
		}
	}
	if k := dnsKey(netip.MustParseAddr("192.0.2.1"), 443); !bytes.Equal(k, []byte{192, 0, 2, 1, 1, 187, 0, 0}) {
		t.Errorf("key = %v, want the address, the port in network order, two zero bytes (nft's layout)", k)
	}
}
