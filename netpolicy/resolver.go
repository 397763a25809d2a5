package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ErrNetnsReplaced means the instance netns the resolver serves is no
// longer the one at /run/netns (teardown, or teardown and setup): its
// sockets and sets belong to a dead namespace. The resolver exits, and its
// supervisor starts it again in the new one.
var ErrNetnsReplaced = errors.New("the instance netns was removed or replaced")

// EntryAdder stores answered addresses; *SetWriter is the real one.
type EntryAdder interface {
	Add([]DNSEntry) error
}

// ResolverConfig is what a Resolver needs beyond the plan.
type ResolverConfig struct {
	// Upstreams are queried in order, from wherever the process runs (the
	// host netns under `opencode-launcher dns`).
	Upstreams []netip.AddrPort
	Sets      EntryAdder
	// Guard returns why an answered address must be refused beyond the
	// plan's fixed ranges (the host's own addresses, other instances'
	// subnets), or "". Nil refuses nothing more.
	Guard func(netip.Addr) string
	Log   *slog.Logger
	// UpstreamTimeout bounds one exchange with one upstream (default 2s).
	UpstreamTimeout time.Duration
}

// maxInFlight bounds the queries being forwarded at once, so a flood from
// the instance costs bounded memory; beyond it queries get SERVFAIL.
const maxInFlight = 256

// maxTCPClients bounds the open TCP connections to the resolver.
const maxTCPClients = 64

// Resolver is the DNS server of one instance with outboundAllowDomains. It
// answers only allowed names, forwards them upstream, refuses answers that
// point into the host or other instances, and adds every answered address
// to the instance's DNS sets before it returns the answer, so a client's
// first connect never races the set.
type Resolver struct {
	p        Plan
	cfg      ResolverConfig
	udp, tcp *dns.Client
	sem      chan struct{}
	blocked  *onceLog
	failures *onceLog // upstream and set errors: rate-limited, not deduplicated
}

// NewResolver checks cfg against p.
func NewResolver(p Plan, cfg ResolverConfig) (*Resolver, error) {
	if p.DNS == nil {
		return nil, bug(errors.New("NewResolver: plan has no DNS"))
	}
	if len(cfg.Upstreams) == 0 {
		return nil, fmt.Errorf("netpolicy: resolver %s: no upstream resolver (set networkIsolation.nameservers, or give the host a nameserver in /etc/resolv.conf)", p.Instance)
	}
	if cfg.Sets == nil || cfg.Log == nil {
		return nil, bug(errors.New("NewResolver: Sets and Log are required"))
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	return &Resolver{
		p:        p,
		cfg:      cfg,
		udp:      &dns.Client{Net: "udp", Timeout: cfg.UpstreamTimeout, UDPSize: 1232},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.UpstreamTimeout},
		sem:      make(chan struct{}, maxInFlight),
		blocked:  newOnceLog(blockedLogRate, blockedLogBurst, blockedNamesMax),
		failures: newOnceLog(blockedLogRate, blockedLogBurst, blockedNamesMax),
	}, nil
}

// Blocked-name log lines: once per name, and at most this rate overall.
const (
	blockedLogRate  = 5 // per second
	blockedLogBurst = 10
	blockedNamesMax = 10000
)

// ServeDNS implements dns.Handler.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var m *dns.Msg
	select {
	case r.sem <- struct{}{}:
		m = r.Answer(req)
		<-r.sem
	default:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// Answer computes the reply to req. It is ServeDNS without the transport.
func (r *Resolver) Answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		return m
	}
	q := req.Question[0]
	name := NormalizeName(q.Name)
	ports := MatchDomains(r.p.Domains, name)
	if ports == nil || q.Qclass != dns.ClassINET {
		r.logBlocked("dns "+dns.CanonicalName(q.Name), "type", dns.TypeToString[q.Qtype])
		m.SetRcode(req, dns.RcodeRefused)
		return m
	}
	if req.IsEdns0() != nil {
		defer m.SetEdns0(1232, false)
	}
	if q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA {
		// Only A and AAAA answers can be put into the sets, so other types
		// (HTTPS/SVCB address hints, say) would name addresses the filter
		// does not know: answer "no such record" and clients fall back to
		// A/AAAA.
		m.SetReply(req)
		m.RecursionAvailable = true
		return m
	}
	resp, err := r.forward(q)
	if err != nil {
		r.logFailure(slog.LevelWarn, "dns upstream failed", "name", q.Name, "err", err)
		m.SetRcode(req, dns.RcodeServerFailure)
		return m
	}
	if resp.Rcode != dns.RcodeSuccess {
		m.SetRcode(req, resp.Rcode)
		m.RecursionAvailable = true
		return m
	}
	chain, addrs := followChain(resp, q)
	var entries []DNSEntry
	for _, rr := range addrs {
		a := rrAddr(rr)
		if why := r.refused(a); why != "" {
			r.logBlocked(fmt.Sprintf("dns %s answered %s", dns.CanonicalName(q.Name), a), "reason", why)
			m.SetRcode(req, dns.RcodeRefused)
			return m
		}
		ttl := max(time.Duration(rr.Header().Ttl)*time.Second, r.p.DNS.MinTTL)
		ttl = min(ttl, r.p.DNS.MaxTTL)
		for _, port := range ports {
			entries = append(entries, DNSEntry{Addr: a, Port: port, Name: name, Timeout: ttl})
		}
	}
	if len(entries) > 0 {
		if err := r.cfg.Sets.Add(entries); err != nil {
			// Fail closed: an answer whose addresses are not in the set
			// would only produce rejected connects.
			r.logFailure(slog.LevelError, "dns set update failed", "name", q.Name, "err", err)
			m.SetRcode(req, dns.RcodeServerFailure)
			return m
		}
	}
	m.SetReply(req)
	m.RecursionAvailable = true
	maxTTL := uint32(r.p.DNS.MaxTTL / time.Second)
	for _, rr := range append(chain, addrs...) {
		rr.Header().Ttl = min(rr.Header().Ttl, maxTTL)
		m.Answer = append(m.Answer, rr)
	}
	return m
}

// forward asks the upstreams in turn; a truncated UDP answer is repeated
// over TCP. SERVFAIL and REFUSED move on to the next upstream.
func (r *Resolver) forward(q dns.Question) (*dns.Msg, error) {
	out := new(dns.Msg)
	out.SetQuestion(dns.CanonicalName(q.Name), q.Qtype)
	out.RecursionDesired = true
	out.SetEdns0(1232, false)
	var errs []error
	for _, up := range r.cfg.Upstreams {
		addr := up.String()
		resp, _, err := r.udp.Exchange(out, addr)
		if err == nil && resp.Truncated {
			resp, _, err = r.tcp.Exchange(out, addr)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		case len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, out.Question[0].Name) || resp.Question[0].Qtype != q.Qtype:
			errs = append(errs, fmt.Errorf("%s: answer is for another question", addr))
		case resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused:
			errs = append(errs, fmt.Errorf("%s: %s", addr, dns.RcodeToString[resp.Rcode]))
		default:
			return resp, nil
		}
	}
	return nil, errors.Join(errs...)
}

// followChain returns the CNAME chain that starts at the question's name
// and the address records of the question's type at its end. Everything
// else in the answer (records for other names) is dropped, so an upstream
// cannot slip addresses for unrelated names into the sets. The policy was
// checked on the queried name: CNAME targets (CDN names) need not be
// listed.
func followChain(resp *dns.Msg, q dns.Question) (chain, addrs []dns.RR) {
	cur := dns.CanonicalName(q.Name)
	for range 16 {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && dns.CanonicalName(c.Hdr.Name) == cur {
				chain = append(chain, c)
				next = dns.CanonicalName(c.Target)
				break
			}
		}
		if next == "" {
			break
		}
		cur = next
	}
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == q.Qtype && dns.CanonicalName(rr.Header().Name) == cur && rrAddr(rr).IsValid() {
			addrs = append(addrs, rr)
		}
	}
	return chain, addrs
}

func rrAddr(rr dns.RR) netip.Addr {
	var ip net.IP
	switch v := rr.(type) {
	case *dns.A:
		ip = v.A.To4()
	case *dns.AAAA:
		ip = v.AAAA.To16()
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// refused says why an answered address may not be put in the sets.
func (r *Resolver) refused(a netip.Addr) string {
	for _, p := range r.p.DNS.Refused {
		if p.Contains(a) {
			return refusedWhy(p)
		}
	}
	if r.cfg.Guard != nil {
		return r.cfg.Guard(a)
	}
	return ""
}

func refusedWhy(p netip.Prefix) string {
	switch {
	case p.Addr().IsLoopback():
		return "loopback " + p.String()
	case p == netip.MustParsePrefix("169.254.0.0/16"):
		return "link-local " + p.String() + " (holds the metadata address 169.254.169.254)"
	case p == PoolPrefix:
		return "the instance address pool " + p.String()
	case p.Bits() == 30:
		return "this instance's subnet " + p.String()
	}
	return "reserved range " + p.String()
}

func (r *Resolver) logBlocked(what string, args ...any) {
	ok, suppressed := r.blocked.allow(what)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.cfg.Log.Warn(LogPrefix(r.p.Instance)+what, args...)
}

// logFailure logs at a bounded rate: a dead upstream must not turn every
// query of a looping agent into a log line.
func (r *Resolver) logFailure(level slog.Level, msg string, args ...any) {
	ok, suppressed := r.failures.allow("")
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.cfg.Log.Log(context.Background(), level, msg, args...)
}

// onceLog lets a key through the first time only (the empty key every time), and no more than rate
// keys per second (burst), counting what the rate limit dropped. After max
// distinct keys it forgets them all, so memory stays bounded.
type onceLog struct {
	mu         sync.Mutex
	seen       map[string]bool
	max        int
	rate       float64
	burst      float64
	tokens     float64
	last       time.Time
	suppressed int
	now        func() time.Time
}

func newOnceLog(rate, burst, max int) *onceLog {
	return &onceLog{seen: map[string]bool{}, max: max, rate: float64(rate), burst: float64(burst), tokens: float64(burst), now: time.Now}
}

func (o *onceLog) allow(key string) (bool, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if key != "" && o.seen[key] {
		return false, 0
	}
	now := o.now()
	if !o.last.IsZero() {
		o.tokens = min(o.burst, o.tokens+now.Sub(o.last).Seconds()*o.rate)
	}
	o.last = now
	if o.tokens < 1 {
		o.suppressed++
		return false, 0
	}
	o.tokens--
	if key != "" {
		if len(o.seen) >= o.max {
			clear(o.seen)
		}
		o.seen[key] = true
	}
	s := o.suppressed
	o.suppressed = 0
	return true, s
}
