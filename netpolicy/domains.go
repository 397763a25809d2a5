package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultDomainPorts are the destination ports a host name without ":port"
// allows: HTTPS and HTTP, which is what model providers, package
// registries and git hosts over HTTPS need. Anything else (ssh to a git
// host on 22, say) must be written out as name:port.
var DefaultDomainPorts = []uint16{80, 443}

// DomainRule is one parsed entry of outboundAllowDomains.
//
// An exact rule ("api.anthropic.com") matches that name only. A wildcard
// rule ("*.github.com") matches every name below the suffix, at any depth
// ("api.github.com", "a.b.github.com"), but not the suffix itself: list
// "github.com" as well to allow it. Ports apply to TCP and UDP alike (UDP
// 443 is HTTP/3).
type DomainRule struct {
	Entry    string   `json:"entry"`    // as written in the spec
	Name     string   `json:"name"`     // lower case, no trailing dot, without "*." and port
	Wildcard bool     `json:"wildcard"` // "*.<Name>"
	Ports    []uint16 `json:"ports"`    // sorted, never empty
}

// String renders the rule in its canonical spelling.
func (r DomainRule) String() string {
	n := r.Name
	if r.Wildcard {
		n = "*." + n
	}
	return n
}

// Matches reports whether the query name falls under the rule. It compares
// label by label (see HostLabels): a name that is not a host name matches
// nothing.
func (r DomainRule) Matches(name string) bool {
	labels, ok := HostLabels(name)
	return ok && r.matchLabels(labels)
}

// matchLabels compares whole labels, so that the one label "x.wild" under
// "test" (x\.wild.test) is not below *.wild.test. labels are lower case.
func (r DomainRule) matchLabels(labels []string) bool {
	rl := strings.Split(r.Name, ".")
	if r.Wildcard {
		// At least one label more than the suffix: *.wild.test does not
		// cover wild.test itself.
		if len(labels) <= len(rl) {
			return false
		}
		labels = labels[len(labels)-len(rl):]
	}
	return slices.Equal(labels, rl)
}

// NormalizeName lower-cases a DNS name and drops the trailing root dot, the
// form DomainRule.Name and MatchDomains use.
func NormalizeName(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// HostLabels splits a name, as miekg/dns presents a query name, into its
// labels, lower case (DNS compares ASCII case-insensitively), or reports
// that it is not a host name. The presentation form escapes every byte a
// host name cannot hold: "\." is a dot inside a label, "\DDD" any other
// byte. A host name's labels hold only letters, digits, '-' and '_', so a
// name with a backslash or any other byte is refused whole, before any
// matching (deny by default), and splitting the rest at '.' gives exactly
// the labels that were on the wire.
func HostLabels(name string) ([]string, bool) {
	name = NormalizeName(name)
	if name == "" || len(name) > maxNameLen {
		return nil, false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > maxLabelLen {
			return nil, false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nil, false
			}
		}
	}
	return labels, true
}

// MatchDomains returns the union of the ports that rules allow for name
// (sorted), or nil when no rule matches or name is not a host name (see
// HostLabels).
func MatchDomains(rules []DomainRule, name string) []uint16 {
	labels, ok := HostLabels(name)
	if !ok {
		return nil
	}
	return matchPorts(rules, labels, false)
}

// matchEntryName is MatchDomains for the name a DNS set element carries:
// a name too long for the element's comment is stored as "~" and its tail
// (elementComment). Of such a tail only the labels after its first dot are
// whole, and the name had more labels before them, so only a wildcard rule
// can be told to match.
func matchEntryName(rules []DomainRule, name string) []uint16 {
	tail, cut := strings.CutPrefix(name, "~")
	if !cut {
		return MatchDomains(rules, name)
	}
	// The cut first label must be host-name bytes too: a backslash
	// anywhere means the name was not a host name.
	labels, ok := HostLabels(tail)
	if !ok || len(labels) < 2 {
		return nil
	}
	return matchPorts(rules, labels[1:], true)
}

// matchPorts: with truncated, labels are the whole trailing labels of a
// longer name, so a wildcard rule matches when they end with its suffix.
func matchPorts(rules []DomainRule, labels []string, truncated bool) []uint16 {
	var ports []uint16
	for _, r := range rules {
		switch {
		case truncated && r.Wildcard:
			rl := strings.Split(r.Name, ".")
			if len(labels) >= len(rl) && slices.Equal(labels[len(labels)-len(rl):], rl) {
				ports = append(ports, r.Ports...)
			}
		case !truncated && r.matchLabels(labels):
			ports = append(ports, r.Ports...)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// ParseDomain parses one outboundAllowDomains entry: a fully qualified host
// name, optionally with a leading "*." wildcard label, optionally followed
// by ":port". The error says what is wrong and, where it can, what to
// write instead.
func ParseDomain(entry string) (DomainRule, error) {
	r := DomainRule{Entry: entry}
	s := entry
	if s == "" {
		return r, fmt.Errorf("is empty; give a host name such as api.anthropic.com")
	}
	if strings.Contains(s, "://") {
		return r, fmt.Errorf("%q is a URL; give the host name alone", entry)
	}
	if strings.ContainsAny(s, " \t\r\n\x00/@?#") {
		return r, fmt.Errorf("%q contains a space, control character, '/', '@', '?' or '#'; give a bare host name, not a URL", entry)
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return r, fmt.Errorf("%q is an IP address; put addresses in outboundAllowCidrs (as a /32 or /128)", entry)
	}
	if host, port, ok := strings.Cut(s, ":"); ok {
		if strings.Contains(port, ":") {
			return r, fmt.Errorf("%q has more than one ':'; write name:port, e.g. registry.npmjs.org:443", entry)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return r, fmt.Errorf("%q: port %q is not a number from 1 to 65535", entry, port)
		}
		r.Ports = []uint16{uint16(p)}
		s = host
	} else {
		r.Ports = slices.Clone(DefaultDomainPorts)
	}
	if strings.HasPrefix(s, "*.") {
		r.Wildcard = true
		s = s[2:]
	}
	s = NormalizeName(s)
	if s == "" {
		return r, fmt.Errorf("%q has no host name", entry)
	}
	if len(s) > maxNameLen {
		return r, fmt.Errorf("%q is longer than %d characters, the DNS limit", entry, maxNameLen)
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return r, fmt.Errorf("%q has an empty label (two dots, or a leading dot)", entry)
		case strings.Contains(l, "*"):
			return r, fmt.Errorf("%q: '*' is only allowed as the whole first label, as in *.github.com", entry)
		case len(l) > maxLabelLen:
			return r, fmt.Errorf("%q: label %q is longer than %d characters", entry, l, maxLabelLen)
		case l[0] == '-' || l[len(l)-1] == '-':
			return r, fmt.Errorf("%q: label %q starts or ends with '-'", entry, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return r, fmt.Errorf("%q: label %q contains %q; use letters, digits, '-' and '_' (write internationalised names in their xn-- form)", entry, l, c)
			}
		}
	}
	if len(labels) < 2 {
		if r.Wildcard {
			return r, fmt.Errorf("%q would allow a whole top-level domain; give at least two labels after '*.'", entry)
		}
		return r, fmt.Errorf("%q is not a fully qualified name (it has no dot); single-label names are resolved by search domains, which the netns resolver does not use", entry)
	}
	if t := labels[len(labels)-1]; t[0] >= '0' && t[0] <= '9' {
		return r, fmt.Errorf("%q: the top-level label %q starts with a digit, so it is not a host name", entry, t)
	}
	if s == "localhost" || strings.HasSuffix(s, ".localhost") {
		return r, fmt.Errorf("%q is a loopback name; loopback inside the netns is always allowed", entry)
	}
	r.Name = s
	return r, nil
}

// ParseDomains parses every entry and merges rules with the same name and
// wildcard into one (union of ports), keeping the order of first
// appearance, so equivalent lists give identical plans.
func ParseDomains(entries []string) ([]DomainRule, error) {
	var out []DomainRule
	idx := map[string]int{}
	for i, e := range entries {
		r, err := ParseDomain(e)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		k := r.String()
		if j, ok := idx[k]; ok {
			ports := append(out[j].Ports, r.Ports...)
			slices.Sort(ports)
			out[j].Ports = slices.Compact(ports)
			continue
		}
		idx[k] = len(out)
		out = append(out, r)
	}
	return out, nil
}
