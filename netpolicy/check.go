package netpolicy

import (
	"fmt"
	"net/netip"

	"github.com/ocnix/ocnix/internal/names"
	"github.com/ocnix/ocnix/internal/problem"
)

// Spec keys of the fields Input comes from, in the spec's JSON spelling.
const (
	keyName        = "name"
	keyListenAddr  = "listen.address"
	keyListenPort  = "listen.port"
	keySubnet      = "networkIsolation.subnet"
	keyCIDRs       = "networkIsolation.outboundAllowCidrs"
	keyNameservers = "networkIsolation.nameservers"
	keyDomains     = "networkIsolation.outboundAllowDomains"
	// keyDNSMinTTL is not a spec field: only tests set Input.DNSMinTTL.
	keyDNSMinTTL = "netpolicy.Input.DNSMinTTL"
)

// Check returns every problem of in at once, each keyed by the spec field
// it came from, so that an operator fixes a spec in one pass. Build
// refuses an input with any.
//
// With isolation off only the name is checked: a disabled plan uses
// nothing else, and teardown of an instance whose network settings went
// stale must still work.
func Check(in Input) problem.List {
	var ps problem.List
	if err := names.CheckInstance(in.Instance); err != nil {
		ps.Add(keyName, "%s", err)
	}
	if !in.Enable {
		return ps
	}
	if in.ListenPort < 0 || in.ListenPort > 65535 {
		ps.Add(keyListenPort, "is %d; use 1 to 65535 (0: not published)", in.ListenPort)
	}
	if in.ListenAddress != "" {
		if _, err := netip.ParseAddr(in.ListenAddress); err != nil {
			ps.Add(keyListenAddr, "%q is not an IP address", in.ListenAddress)
		}
	}
	var v4 []Interval
	for i, s := range in.AllowCIDRs {
		p, err := ParseCIDR(s)
		if err != nil {
			ps.Add(fmt.Sprintf("%s[%d]", keyCIDRs, i), "%s", err)
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, Interval{First: p.Addr(), Last: lastAddr(p)})
		}
	}
	if in.Subnet != "" {
		if _, err := parseSubnet(in.Subnet); err != nil {
			ps.Add(keySubnet, "%s", err)
		}
	}
	domains := len(in.AllowDomains) > 0
	for i, s := range in.Nameservers {
		key := fmt.Sprintf("%s[%d]", keyNameservers, i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			ps.Add(key, "%q is not an IP address", s)
		case domains:
			// An upstream of the resolver, queried from the host netns:
			// any address works there.
		default:
			if reason := nameserverProblem(a, v4); reason != "" {
				ps.Add(key, "%s %s", a, reason)
			}
		}
	}
	for i, s := range in.AllowDomains {
		if _, err := ParseDomain(s); err != nil {
			ps.Add(fmt.Sprintf("%s[%d]", keyDomains, i), "%s", err)
		}
	}
	if domains {
		if in.ListenPort == int(dnsListen.Port()) {
			ps.Add(keyListenPort, "is %d, the port of the netns resolver that %s needs; choose another", in.ListenPort, keyDomains)
		}
		if in.DNSMinTTL > dnsMaxTTL {
			ps.Add(keyDNSMinTTL, "%s exceeds the maximum %s", in.DNSMinTTL, dnsMaxTTL)
		}
	}
	return ps
}
