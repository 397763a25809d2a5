package netpolicy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported is returned by the apply functions on systems other than
// Linux; Build and String work everywhere.
var ErrUnsupported = errors.New("netpolicy: network isolation needs Linux")

// Input is what netpolicy needs from the instance spec.
type Input struct {
	Instance      string
	Enable        bool
	ListenAddress string
	ListenPort    int
	AllowCIDRs    []string
	Subnet        string   // optional IPv4 /30 overriding the pool
	Nameservers   []string // optional; empty = the host's (HostFacts), chosen by Build
	// AllowDomains are host names the instance may reach (see
	// ParseDomain). With any, DNS inside the netns goes to the resolver
	// (see doc.go, "Egress by host name") and Nameservers become its
	// upstreams.
	AllowDomains []string
	// UID is the uid the instance's processes run as, read from the host's
	// account database (a host fact); nil when the user does not exist
	// here (a Nix builder, say). With a listen port it makes the plan's
	// Listener, the instance's entry in the peer guard.
	UID *uint32
	// DNSMinTTL is the floor of a resolved address's lifetime in the DNS
	// sets; 0 means DefaultDNSMinTTL. Tests lower it.
	DNSMinTTL time.Duration
}

// DNSPlan is the resolver of an instance with outboundAllowDomains.
type DNSPlan struct {
	// Listen is where the resolver answers, inside the netns; the netns
	// resolv.conf names it.
	Listen netip.AddrPort `json:"listen"`
	// Upstreams are the resolvers it forwards allowed queries to, from
	// the host netns. When UpstreamsDerived is set they are the host's
	// nameservers (HostFacts), and Plan.NameserversSkipped holds those
	// that do not parse.
	Upstreams        []netip.AddrPort `json:"upstreams"`
	UpstreamsDerived bool             `json:"upstreamsDerived"`
	Set4             string           `json:"set4"`
	Set6             string           `json:"set6"`
	// An answered address stays in the set for its TTL, at least MinTTL
	// and at most MaxTTL; answers handed to the client carry at most
	// MaxTTL, so no client caches an address longer than the set keeps it.
	MinTTL time.Duration `json:"minTTL"`
	MaxTTL time.Duration `json:"maxTTL"`
	// Refused are the address ranges an answer may never point to, on top
	// of the host's own addresses and other instances' subnets, which the
	// resolver reads from the host while it runs.
	Refused []netip.Prefix `json:"refused"`
}

// Plan is the complete network setup of one instance as plain data. Build
// computes it without privileges or side effects, from the input and the
// host facts; Ensure, Teardown, Enter and Verify only execute it, and
// choose nothing.
//
// Invariants (Build guarantees them):
//   - every name is a pure function of Instance, so Teardown of the same
//     plan finds exactly what Ensure created and nothing else;
//   - Filter is the complete egress/ingress policy and lives inside the
//     netns, so nothing in the host ruleset can widen it;
//   - Host holds only masquerade, so losing it can only cut egress. The
//     shared ForwardTable guards the forwarding setup turns on; losing it
//     opens forwarding on those interfaces until the next setup (doc.go).
type Plan struct {
	Instance string `json:"instance"`
	Enable   bool   `json:"enable"`

	Netns     string `json:"netns"`     // opencode-<name>
	NetnsPath string `json:"netnsPath"` // /run/netns/opencode-<name>
	HostVeth  string `json:"hostVeth"`  // oc-<hash>, in the host netns
	PeerVeth  string `json:"peerVeth"`  // host0, in the instance netns

	Subnet       netip.Prefix `json:"subnet"`       // the /30 of the veth pair
	SubnetSource string       `json:"subnetSource"` // "pool" or "override"
	HostAddr     netip.Prefix `json:"hostAddr"`     // .1, on HostVeth; the netns's gateway
	PeerAddr     netip.Prefix `json:"peerAddr"`     // .2, on PeerVeth

	ListenAddress string `json:"listenAddress"`
	ListenPort    int    `json:"listenPort"`
	// Listener is the instance's entry in the peer guard of the shared
	// host table (SharedTable), isolated or not: setup registers it,
	// teardown removes it. Nil without a listen port, or when the
	// instance's user is unknown on this host (setup then refuses).
	Listener *Listener `json:"listener,omitempty"`
	// ProxyTarget is where systemd-socket-proxyd, started inside the netns,
	// connects: the server's port on the netns loopback.
	ProxyTarget string `json:"proxyTarget"`

	Allow4 []Interval `json:"allow4"` // merged AllowCIDRs, IPv4
	Allow6 []Interval `json:"allow6"` // merged AllowCIDRs, IPv6

	// Nameservers are the servers ResolvConfContent names:
	// networkIsolation.nameservers; or, when NameserversFromHost is set,
	// the host's that work from inside the netns, with the others in
	// NameserversSkipped; or, with DNS, the netns resolver.
	Nameservers         []netip.Addr        `json:"nameservers"`
	NameserversFromHost bool                `json:"nameserversFromHost"`
	NameserversSkipped  []SkippedNameserver `json:"nameserversSkipped,omitempty"`
	// ResolvConf is the netns resolv.conf, and ResolvConfContent exactly
	// what Ensure writes there.
	ResolvConf        string `json:"resolvConf"`
	ResolvConfContent string `json:"resolvConfContent,omitempty"`

	// Domains and DNS are set only with outboundAllowDomains.
	Domains []DomainRule `json:"domains,omitempty"`
	DNS     *DNSPlan     `json:"dns,omitempty"`

	Filter Table `json:"filter"` // inside the netns
	Host   Table `json:"host"`   // in the host netns

	HostSysctls  HostSysctls  `json:"hostSysctls,omitzero"`
	NetnsSysctls NetnsSysctls `json:"netnsSysctls,omitzero"`

	// Notes are plain-language consequences of the policy worth showing in
	// explain (for example, IPv6 CIDRs that cannot be reached).
	Notes []string `json:"notes,omitempty"`
}

// Sysctl is one /proc/sys setting; Key uses dots (net.ipv4.conf.X.forwarding).
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Why   string `json:"why"`
}

func (s Sysctl) path() string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(s.Key, ".", "/"))
}

// HostSysctls are the sysctls Ensure sets in the host netns. Each has its
// own field because each must be applied at its own step of Ensure: by
// name, a reordered plan cannot apply the wrong one.
type HostSysctls struct {
	// LogAllNetns is host-wide and goes first, before anything can log.
	LogAllNetns Sysctl `json:"logAllNetns"`
	// VethForwarding and VethNoIPv6 go before the host veth is up.
	VethForwarding Sysctl `json:"vethForwarding"`
	VethNoIPv6     Sysctl `json:"vethNoIPv6"`
}

// List returns the sysctls in the order Ensure applies them.
func (h HostSysctls) List() []Sysctl {
	return []Sysctl{h.LogAllNetns, h.VethForwarding, h.VethNoIPv6}
}

// NetnsSysctls are the sysctls Ensure sets inside the instance netns.
type NetnsSysctls struct {
	// DefaultNoIPv6 goes in before the veth peer is moved in, so the peer
	// never gets even a link-local IPv6 address.
	DefaultNoIPv6 Sysctl `json:"defaultNoIPv6"`
	PeerNoIPv6    Sysctl `json:"peerNoIPv6"`
	// UnprivilegedPortStart is set only with the resolver (DNS).
	UnprivilegedPortStart *Sysctl `json:"unprivilegedPortStart,omitempty"`
}

// List returns the sysctls in the order Ensure applies them.
func (n NetnsSysctls) List() []Sysctl {
	out := []Sysctl{n.DefaultNoIPv6, n.PeerNoIPv6}
	if n.UnprivilegedPortStart != nil {
		out = append(out, *n.UnprivilegedPortStart)
	}
	return out
}

// Policy constants; doc.go explains the choices.
const (
	// logRate and logBurst bound blocked-attempt log lines per instance.
	logRate  = 5
	logBurst = 10
	// Set names inside the filter table.
	set4 = "allow4"
	set6 = "allow6"
	// The address . port sets the resolver fills, and its address.
	dnsSet4 = "dns4"
	dnsSet6 = "dns6"
	// DefaultDNSMinTTL is the floor of an answered address's lifetime in
	// the set: answers with a TTL of a few seconds (CDNs) would otherwise
	// expire before a slow client connects, or between the connects of
	// one page load.
	DefaultDNSMinTTL = 60 * time.Second
	// dnsMaxTTL caps it, so that an address a name stopped using does not
	// stay open for days because of a long TTL.
	dnsMaxTTL = time.Hour
	// dnsSetSize bounds each DNS set, so that answers with ever new
	// addresses (a wildcard zone that answers anything) cannot grow kernel
	// memory without end: a full set fails the insert, and the resolver
	// answers SERVFAIL.
	dnsSetSize = 65536
)

// dnsListen is the resolver's address inside the netns: the netns's own
// loopback, which the filter always allows and nothing outside the netns
// can reach. Port 53 is privileged (net.ipv4.ip_unprivileged_port_start is
// per netns and 1024 by default), so the instance cannot bind it first.
var dnsListen = netip.MustParseAddrPort("127.0.0.1:53")

// dnsRefused are destinations a DNS answer may never point an instance at:
// loopback, link-local (which holds the cloud metadata address
// 169.254.169.254), "this network", multicast, reserved and broadcast
// space, and the whole instance pool. IPv6 likewise.
var dnsRefused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	PoolPrefix,
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Build computes the plan for in on a host with the given facts. It is
// pure: no files, no syscalls. An input with any problem (Check) is
// refused as a *problem.Error listing them all.
func Build(in Input, host HostFacts) (Plan, error) {
	if err := Check(in).Err(in.Instance); err != nil {
		return Plan{}, err
	}
	// Names are filled in even when isolation is off, so that Teardown of
	// a disabled instance still finds what an earlier setup left.
	p := Plan{
		Instance:  in.Instance,
		Enable:    in.Enable,
		Netns:     NetnsName(in.Instance),
		NetnsPath: filepath.Join(NetnsRunDir, NetnsName(in.Instance)),
		HostVeth:  HostVethName(in.Instance),
		PeerVeth:  PeerVeth,
	}
	p.ResolvConf = filepath.Join(NetnsEtcDir, p.Netns, "resolv.conf")
	p.ListenAddress = in.ListenAddress
	p.ListenPort = in.ListenPort
	if in.ListenPort > 0 && in.UID != nil {
		p.Listener = &Listener{Instance: in.Instance, Port: uint16(in.ListenPort), UID: *in.UID}
	}
	if !in.Enable {
		return p, nil
	}
	// Check accepted every value below, so an error here is netpolicy's.
	allow4, allow6, err := MergeCIDRs(in.AllowCIDRs)
	if err != nil {
		return Plan{}, bug(err)
	}

	p.SubnetSource = "pool"
	p.Subnet = PoolSubnet(in.Instance)
	if in.Subnet != "" {
		s, err := parseSubnet(in.Subnet)
		if err != nil {
			return Plan{}, bug(err)
		}
		p.Subnet, p.SubnetSource = s, "override"
	}
	p.HostAddr, p.PeerAddr = pairAddrs(p.Subnet)
	if in.ListenPort > 0 {
		p.ProxyTarget = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(in.ListenPort)).String()
	}
	p.Allow4, p.Allow6 = allow4, allow6
	if len(in.AllowDomains) > 0 {
		if err := buildDNS(&p, in, host); err != nil {
			return Plan{}, err
		}
	} else {
		buildNameservers(&p, in, host)
	}

	if len(allow6) > 0 {
		p.Notes = append(p.Notes, "IPv6 is disabled inside the netns by design: the allow6 set is enforced but no IPv6 route exists, so IPv6 destinations fail fast with 'network unreachable'")
	}
	if containsAddr(allow4, p.HostAddr.Addr()) {
		p.Notes = append(p.Notes, fmt.Sprintf("outboundAllowCidrs include the host side of the veth (%s): the instance can reach services listening on the host", p.HostAddr.Addr()))
	}

	p.Filter = filterTable(p)
	p.Host = hostTable(p)
	p.HostSysctls = HostSysctls{
		LogAllNetns:    Sysctl{Key: "net.netfilter.nf_log_all_netns", Value: "1", Why: "blocked-attempt log lines from the instance netns reach the host kernel log (host-wide)"},
		VethForwarding: Sysctl{Key: "net.ipv4.conf." + p.HostVeth + ".forwarding", Value: "1", Why: "forward the instance's traffic arriving on its veth"},
		VethNoIPv6:     Sysctl{Key: "net.ipv6.conf." + p.HostVeth + ".disable_ipv6", Value: "1", Why: "no IPv6 (not even link-local) between host and instance"},
	}
	p.NetnsSysctls = NetnsSysctls{
		DefaultNoIPv6: Sysctl{Key: "net.ipv6.conf.default.disable_ipv6", Value: "1", Why: "interfaces created in the netns start without IPv6"},
		PeerNoIPv6:    Sysctl{Key: "net.ipv6.conf." + PeerVeth + ".disable_ipv6", Value: "1", Why: "IPv6 disabled on the veth by design; ::1 on lo stays for local servers"},
	}
	if p.DNS != nil {
		// The kernel default, made explicit: the instance (no capabilities)
		// must never be able to take the resolver's port 53 in its netns.
		p.NetnsSysctls.UnprivilegedPortStart = &Sysctl{Key: "net.ipv4.ip_unprivileged_port_start", Value: "1024", Why: "only root binds the resolver's port 53 in the netns"}
	}
	return p, nil
}

// buildNameservers fills the netns resolv.conf of an instance without
// outboundAllowDomains: its servers are queried from inside the netns, so
// host nameservers that cannot work from there are skipped, with the
// reason in the plan and the file.
func buildNameservers(p *Plan, in Input, host HostFacts) {
	if len(in.Nameservers) == 0 {
		p.NameserversFromHost = true
		p.Nameservers, p.NameserversSkipped = deriveNameservers(host.Nameservers, p.Allow4)
	}
	for _, s := range in.Nameservers {
		p.Nameservers = append(p.Nameservers, netip.MustParseAddr(s).Unmap())
	}
	p.ResolvConfContent = renderResolvConf(p.Instance, p.Nameservers, p.NameserversSkipped)
}

// buildDNS plans the resolver of an instance with outboundAllowDomains.
// The netns resolv.conf then names only the resolver, and the nameservers
// are its upstreams, queried from the host netns: loopback resolvers
// (systemd-resolved's 127.0.0.53) work there, and they need no CIDR.
func buildDNS(p *Plan, in Input, host HostFacts) error {
	rules, err := ParseDomains(in.AllowDomains)
	if err != nil {
		return bug(err)
	}
	d := &DNSPlan{
		Listen: dnsListen,
		Set4:   dnsSet4,
		Set6:   dnsSet6,
		MinTTL: DefaultDNSMinTTL,
		MaxTTL: dnsMaxTTL,
	}
	if in.DNSMinTTL > 0 {
		d.MinTTL = in.DNSMinTTL
	}
	d.UpstreamsDerived = len(in.Nameservers) == 0
	if d.UpstreamsDerived {
		d.Upstreams, p.NameserversSkipped = deriveUpstreams(host.Nameservers)
		if len(d.Upstreams) == 0 {
			p.Notes = append(p.Notes, "the host's /etc/resolv.conf names no nameserver, so the resolver has no upstream and cannot start: set networkIsolation.nameservers")
		}
	}
	for _, s := range in.Nameservers {
		d.Upstreams = append(d.Upstreams, netip.AddrPortFrom(netip.MustParseAddr(s).Unmap(), 53))
	}
	d.Refused = append(slices.Clone(dnsRefused), p.Subnet)
	p.Domains, p.DNS = rules, d
	p.Nameservers = []netip.Addr{dnsListen.Addr()}
	p.ResolvConfContent = renderResolverConf(p.Instance, dnsListen.Addr())
	return nil
}

// nameserverProblem says why a resolver cannot work from inside the netns,
// or "" if it can.
func nameserverProblem(a netip.Addr, allow4 []Interval) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "is a loopback address: inside the netns loopback is the netns's own, so a host resolver such as systemd-resolved's 127.0.0.53 is not reachable"
	case a.Is6():
		return "is IPv6, which is disabled inside the netns by design"
	case !containsAddr(allow4, a):
		return "is not inside outboundAllowCidrs, so the filter would block it"
	}
	return ""
}

func ruleComment(instance, key string) string { return "ocnix:" + instance + ":" + key }

// filterTable builds the egress/ingress filter that lives in the netns.
func filterTable(p Plan) Table {
	r := func(key string, v Verdict, counter bool, m ...Match) Rule {
		return Rule{Key: key, Matches: m, Counter: counter, Verdict: v, Comment: ruleComment(p.Instance, key)}
	}
	lo := func(k MatchKind) Match { return Match{Kind: k, Value: "lo"} }
	est := Match{Kind: MatchCtState}

	input := []Rule{
		r("in-lo", VerdictAccept, false, lo(MatchIIFName)),
		r("in-established", VerdictAccept, true, est),
	}
	if p.ListenPort > 0 {
		// The published port arrives over lo (systemd-socket-proxyd runs in
		// the netns), which in-lo accepts. From the veth only the host
		// itself may connect: a host that forwards (as egress requires) must
		// not let routed traffic from its LAN reach the server past the
		// listen.address the operator chose.
		input = append(input, r("in-listen", VerdictAccept, true,
			Match{Kind: MatchSaddr4, Value: p.HostAddr.Addr().String()},
			Match{Kind: MatchTCPDport, Value: strconv.Itoa(p.ListenPort)}))
	}
	input = append(input, r("in-drop", VerdictDrop, true))

	logRule := r("blocked-log", VerdictNone, false)
	logRule.Limit = &Limit{Rate: logRate, Burst: logBurst}
	logRule.Log = &Log{Prefix: LogPrefix(p.Instance)}
	var output []Rule
	if p.Listener != nil {
		// The peer guard's rule for the instance's own server, inside the
		// netns where it listens: the agent's commands inherit the server
		// password (see SharedTable), so its uid may not connect to its own
		// port. The proxy (another user) and root's readiness checks may.
		self := []Match{
			lo(MatchOIFName),
			{Kind: MatchSkUID, Value: strconv.FormatUint(uint64(p.Listener.UID), 10)},
			{Kind: MatchTCPSyn},
			{Kind: MatchTCPDport, Value: strconv.Itoa(p.ListenPort)},
		}
		selfLog := r("self-log", VerdictNone, false, self...)
		selfLog.Limit = &Limit{Rate: logRate, Burst: logBurst}
		selfLog.Log = &Log{Prefix: LogPrefix(p.Instance)}
		output = append(output, selfLog, r("self-block", VerdictRejectRST, true, self...))
	}
	output = append(output,
		r("out-lo", VerdictAccept, false, lo(MatchOIFName)),
		r("out-established", VerdictAccept, true, est),
		r("allow4", VerdictAccept, true, Match{Kind: MatchDaddr4Set, Value: set4}),
		r("allow6", VerdictAccept, true, Match{Kind: MatchDaddr6Set, Value: set6}),
	)
	sets := []Set{
		{Name: set4, Type: "ipv4_addr", Elements: p.Allow4},
		{Name: set6, Type: "ipv6_addr", Elements: p.Allow6},
	}
	if p.DNS != nil {
		// Addresses the resolver answered, each with the ports its name
		// allows, until the element times out.
		output = append(output,
			r("dns4-tcp", VerdictAccept, true, Match{Kind: MatchDaddrTCPDport4Set, Value: p.DNS.Set4}),
			r("dns4-udp", VerdictAccept, true, Match{Kind: MatchDaddrUDPDport4Set, Value: p.DNS.Set4}),
			r("dns6-tcp", VerdictAccept, true, Match{Kind: MatchDaddrTCPDport6Set, Value: p.DNS.Set6}),
			r("dns6-udp", VerdictAccept, true, Match{Kind: MatchDaddrUDPDport6Set, Value: p.DNS.Set6}),
		)
		sets = append(sets,
			Set{Name: p.DNS.Set4, Type: "ipv4_addr . inet_service", Timeout: true, Size: dnsSetSize},
			Set{Name: p.DNS.Set6, Type: "ipv6_addr . inet_service", Timeout: true, Size: dnsSetSize},
		)
	}
	output = append(output,
		logRule,
		// TCP gets a reset: connect() fails at once with ECONNREFUSED.
		// An ICMP error would be subject to the kernel's ICMP rate limit,
		// and under a burst some connects would then hang for a SYN
		// retransmit (1 s and more) instead of failing.
		r("blocked-tcp", VerdictRejectRST, true, Match{Kind: MatchL4TCP}),
		r("blocked", VerdictReject, true),
	)
	return Table{
		Family: "inet",
		Name:   FilterTable,
		Sets:   sets,
		Chains: []Chain{
			{Name: "input", Type: "filter", Hook: "input", Priority: 0, Policy: "drop", Rules: input},
			{Name: "output", Type: "filter", Hook: "output", Priority: 0, Policy: "drop", Rules: output},
		},
	}
}

// hostTable builds the host-side table: masquerade of this instance's
// netns address, nothing else. Matching the source address rather than the
// input interface works in postrouting, where the input interface is gone.
func hostTable(p Plan) Table {
	return Table{
		Family: "ip",
		Name:   HostTableName(p.Instance),
		Chains: []Chain{{
			Name: "postrouting", Type: "nat", Hook: "postrouting", Priority: 100, Policy: "accept",
			Rules: []Rule{{
				Key:     "masquerade",
				Matches: []Match{{Kind: MatchSaddr4, Value: p.PeerAddr.Addr().String()}},
				Counter: true,
				Verdict: VerdictMasquerade,
				Comment: ruleComment(p.Instance, "masquerade"),
			}},
		}},
	}
}

// PublishCommands returns the two commands that expose the server on the
// host at ListenAddress:ListenPort (what the NixOS socket and proxy units
// do). They are informational; netpolicy never runs them.
func (p Plan) PublishCommands() []string {
	if !p.Enable || p.ListenPort == 0 {
		return nil
	}
	listen := net0(p.ListenAddress, p.ListenPort)
	return []string{
		fmt.Sprintf("systemd-socket-activate -l %s -- ip netns exec %s /lib/systemd/systemd-socket-proxyd %s", listen, p.Netns, p.ProxyTarget),
		fmt.Sprintf("(the server, inside %s, listens on %s)", p.Netns, p.ProxyTarget),
	}
}

func net0(addr string, port int) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Sprintf("%s:%d", addr, port)
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// String renders the plan for explain: the wiring, then both tables in nft
// syntax.
func (p Plan) String() string {
	var b strings.Builder
	if !p.Enable {
		fmt.Fprintf(&b, "network isolation: disabled (instance %q shares the host network namespace)\n", p.Instance)
		p.writePeerGuard(&b)
		return b.String()
	}
	fmt.Fprintf(&b, "network isolation: enabled (instance %q)\n", p.Instance)
	fmt.Fprintf(&b, "  netns        %s (%s)\n", p.Netns, p.NetnsPath)
	fmt.Fprintf(&b, "  veth         %s %s (host) <-> %s %s (netns)\n", p.HostVeth, p.HostAddr, p.PeerVeth, p.PeerAddr)
	src := "derived from the pool " + PoolPrefix.String()
	if p.SubnetSource == "override" {
		src = "set by networkIsolation.subnet"
	}
	fmt.Fprintf(&b, "  subnet       %s (%s)\n", p.Subnet, src)
	fmt.Fprintf(&b, "  route        default via %s dev %s (in netns)\n", p.HostAddr.Addr(), p.PeerVeth)
	fmt.Fprintf(&b, "  ipv6         disabled on %s and %s by design; ::1 on lo stays\n", p.HostVeth, p.PeerVeth)
	if p.DNS != nil {
		fmt.Fprintf(&b, "  dns          %s: %s, the ocnix resolver (opencode-launcher dns), udp+tcp inside the netns\n", p.ResolvConf, p.DNS.Listen.Addr())
		ups := make([]string, len(p.DNS.Upstreams))
		for i, a := range p.DNS.Upstreams {
			ups[i] = a.String()
		}
		up := strings.Join(ups, ", ")
		if p.DNS.UpstreamsDerived {
			up = "the host's /etc/resolv.conf nameservers: " + cmp.Or(up, "none")
		}
		fmt.Fprintf(&b, "  resolver     answers only the names below (REFUSED otherwise); forwards them from the host netns to %s\n", up)
		writeSkipped(&b, p.NameserversSkipped)
		for _, d := range p.Domains {
			ports := make([]string, len(d.Ports))
			for i, pt := range d.Ports {
				ports[i] = strconv.Itoa(int(pt))
			}
			fmt.Fprintf(&b, "  domain       %-30s tcp+udp ports %s\n", d, strings.Join(ports, ","))
		}
		fmt.Fprintf(&b, "  dns sets     @%s, @%s: answered address . port, kept for max(TTL, %s), at most %s; added before the answer is returned\n", p.DNS.Set4, p.DNS.Set6, p.DNS.MinTTL, p.DNS.MaxTTL)
		refused := make([]string, len(p.DNS.Refused))
		for i, r := range p.DNS.Refused {
			refused[i] = r.String()
		}
		fmt.Fprintf(&b, "  dns refuses  answers pointing into %s, the host's own addresses or another instance's subnet\n", strings.Join(refused, ", "))
	} else {
		ns := make([]string, len(p.Nameservers))
		for i, a := range p.Nameservers {
			ns[i] = a.String()
		}
		// The skipped host nameservers and why are comments in the file,
		// which follows.
		switch {
		case !p.NameserversFromHost:
			fmt.Fprintf(&b, "  dns          %s: %s (networkIsolation.nameservers)\n", p.ResolvConf, strings.Join(ns, ", "))
		case len(ns) == 0:
			fmt.Fprintf(&b, "  dns          %s: none (no host /etc/resolv.conf nameserver is usable from the netns): lookups fail inside the netns\n", p.ResolvConf)
		default:
			fmt.Fprintf(&b, "  dns          %s: %s (the host's /etc/resolv.conf nameservers usable from the netns)\n", p.ResolvConf, strings.Join(ns, ", "))
		}
	}
	// The file itself, byte for byte what Ensure writes.
	for _, l := range strings.SplitAfter(strings.TrimSuffix(p.ResolvConfContent, "\n"), "\n") {
		fmt.Fprintf(&b, "  resolv.conf  | %s\n", strings.TrimSuffix(l, "\n"))
	}
	for _, s := range p.HostSysctls.List() {
		fmt.Fprintf(&b, "  sysctl host  %s=%s\n", s.Key, s.Value)
	}
	switch {
	case p.DNS != nil:
		fmt.Fprintf(&b, "  sysctl host  net.ipv4.conf.<if>.forwarding=1 on every interface a route could bring replies on (allowed names may resolve anywhere), chosen at setup from the routes (unless the host already forwards); undone by the last teardown\n")
	case len(p.Allow4) > 0:
		fmt.Fprintf(&b, "  sysctl host  net.ipv4.conf.<if>.forwarding=1 on the interfaces replies from outboundAllowCidrs arrive on, chosen at setup from the routes (unless the host already forwards); undone by the last teardown\n")
	}
	for _, s := range p.NetnsSysctls.List() {
		fmt.Fprintf(&b, "  sysctl netns %s=%s\n", s.Key, s.Value)
	}
	for _, c := range p.PublishCommands() {
		fmt.Fprintf(&b, "  publish      %s\n", c)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "  note         %s\n", n)
	}
	fmt.Fprintf(&b, "# inside netns %s\n%s", p.Netns, p.Filter)
	fmt.Fprintf(&b, "# host\n%s", p.Host)
	p.writePeerGuard(&b)
	return b.String()
}

// writePeerGuard renders the instance's listener and the shared host table
// with only that listener in it.
func (p Plan) writePeerGuard(b *strings.Builder) {
	var ls []Listener
	switch {
	case p.Listener != nil:
		fmt.Fprintf(b, "  peer guard   registers %s in table inet %s: no instance's uid can connect to this port, its own included (opencode gives every command the agent runs the server password), and this instance's uid cannot connect to any other instance's (TCP, over lo or from an instance veth); host users and a reverse proxy can\n", p.Listener, ForwardTableName)
		ls = []Listener{*p.Listener}
	case p.ListenPort > 0:
		fmt.Fprintf(b, "  peer guard   the instance's user has no uid on this host: setup refuses until it exists\n")
	}
	fmt.Fprintf(b, "  peer guard   a host `nft flush ruleset` removes it (and the forward guard) until setup of any instance runs again; preflight then refuses to start the server\n")
	fmt.Fprintf(b, "# host, shared by all instances (this instance's elements shown); setup adds `iifname \"<if>\" counter drop` to forward for each interface it turned forwarding on for\n%s", SharedTable(nil, ls))
}

func writeSkipped(b *strings.Builder, skipped []SkippedNameserver) {
	for _, s := range skipped {
		fmt.Fprintf(b, "  dns skipped  host nameserver %s: %s\n", s.Nameserver, s.Reason)
	}
}
