package netpolicy

import (
	"fmt"
	"strings"
)

// The nft ruleset as plain data. It models only what ocnix emits, so that
// rendering (String, for explain) and lowering (to google/nftables objects,
// for Ensure) are both total functions over it and cannot drift apart: the
// privileged tests compare String() with `nft list table` of the real
// kernel state.

// Table is one nft table.
type Table struct {
	Family string  `json:"family"` // "inet" or "ip"
	Name   string  `json:"name"`
	Sets   []Set   `json:"sets,omitempty"`
	Chains []Chain `json:"chains"`
}

// Set is a named set: an interval set of addresses built from the plan,
// or (Timeout) a set of address . port pairs whose elements expire, filled
// at run time by the DNS resolver and empty in the plan, or (Hash) a plain
// set of exact keys (the peer guard's uids, ports and port . uid pairs).
type Set struct {
	Name     string     `json:"name"`
	Type     string     `json:"type"` // "ipv4_addr", "ipv6_addr", or with Timeout "ipv4_addr . inet_service", "ipv6_addr . inet_service", or with Hash "uid", "inet_service", "inet_service . uid"
	Timeout  bool       `json:"timeout,omitempty"`
	Hash     bool       `json:"hash,omitempty"`
	Size     uint32     `json:"size,omitempty"` // maximum number of elements; 0: no limit
	Elements []Interval `json:"elements,omitempty"`
	Values   []SetValue `json:"values,omitempty"` // with Hash
}

// SetValue is one key of a Hash set in nft syntax ("8787", "1001",
// "8787 . 1001"), with an optional element comment naming its owner.
type SetValue struct {
	Key     string `json:"key"`
	Comment string `json:"comment,omitempty"`
}

func (v SetValue) String() string {
	if v.Comment == "" {
		return v.Key
	}
	return fmt.Sprintf("%s comment %q", v.Key, v.Comment)
}

// Chain is a base chain.
type Chain struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // "filter" or "nat"
	Hook     string `json:"hook"` // "input", "output", "forward", "postrouting"
	Priority int    `json:"priority"`
	Policy   string `json:"policy"` // "accept" or "drop"
	Rules    []Rule `json:"rules"`
}

// Rule is one rule: all Matches must hold; then the optional limit,
// counter and log statements run in that order, then the verdict.
//
// Key is stable per plan and goes into the rule's UserData as the nft
// comment "ocnix:<instance>:<key>", which is how Counters finds the rule
// again and how a human reading `nft list ruleset` knows who owns it.
type Rule struct {
	Key     string  `json:"key"`
	Matches []Match `json:"matches,omitempty"`
	Limit   *Limit  `json:"limit,omitempty"`
	Counter bool    `json:"counter,omitempty"`
	Log     *Log    `json:"log,omitempty"`
	Verdict Verdict `json:"verdict,omitempty"`
	Comment string  `json:"comment"` // "ocnix:<instance>:<key>"
}

// MatchKind enumerates the matches ocnix uses.
type MatchKind string

const (
	MatchIIFName   MatchKind = "iifname"   // meta iifname == Value
	MatchOIFName   MatchKind = "oifname"   // meta oifname == Value
	MatchCtState   MatchKind = "ct-state"  // ct state established,related
	MatchDaddr4Set MatchKind = "daddr4set" // ip daddr @Value
	MatchDaddr6Set MatchKind = "daddr6set" // ip6 daddr @Value
	MatchSaddr4    MatchKind = "saddr4"    // ip saddr == Value
	MatchTCPDport  MatchKind = "tcp-dport" // tcp dport == Value
	MatchL4TCP     MatchKind = "l4-tcp"    // meta l4proto tcp
	// MatchIIFPrefix and MatchOIFPrefix match every interface whose name
	// starts with Value (nft's wildcard "Value*").
	MatchIIFPrefix MatchKind = "iifname-prefix"
	MatchOIFPrefix MatchKind = "oifname-prefix"
	// ip daddr . tcp dport @Value, and the udp and ip6 variants: the
	// address . port sets the DNS resolver fills.
	MatchDaddrTCPDport4Set MatchKind = "daddr4-tcp-dport-set"
	MatchDaddrUDPDport4Set MatchKind = "daddr4-udp-dport-set"
	MatchDaddrTCPDport6Set MatchKind = "daddr6-tcp-dport-set"
	MatchDaddrUDPDport6Set MatchKind = "daddr6-udp-dport-set"
	// The peer guard's matches (SharedTable).
	MatchSkUID    MatchKind = "skuid"     // meta skuid == Value (a uid)
	MatchSkUIDSet MatchKind = "skuid-set" // meta skuid @Value
	// MatchTCPSyn is a connection's first packet: tcp flags syn / syn,ack
	// (SYN set, ACK clear). It also implies meta l4proto tcp, which the
	// two tcp dport set matches below need before them in the rule.
	MatchTCPSyn      MatchKind = "tcp-syn"
	MatchTCPDportSet MatchKind = "tcp-dport-set" // tcp dport @Value
)

// Match is one condition of a rule.
type Match struct {
	Kind  MatchKind `json:"kind"`
	Value string    `json:"value,omitempty"`
}

// Limit is a packet rate limit: Rate packets per second, with Burst.
type Limit struct {
	Rate  uint64 `json:"rate"`
	Burst uint32 `json:"burst"`
}

// Log is an nft log statement.
type Log struct {
	Prefix string `json:"prefix"`
}

// Verdict is the final statement of a rule; empty means continue.
type Verdict string

const (
	VerdictNone       Verdict = ""
	VerdictAccept     Verdict = "accept"
	VerdictDrop       Verdict = "drop"
	VerdictReject     Verdict = "reject"     // icmpx admin-prohibited
	VerdictRejectRST  Verdict = "reject-rst" // tcp reset
	VerdictMasquerade Verdict = "masquerade"
)

// String renders the table in the syntax `nft list table` prints (and
// `nft -f` accepts), except that counters print as a bare "counter": the
// plan has no packet counts. Elements print on one line.
func (t Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", t.Family, t.Name)
	// nft separates the sets and chains of a table with blank lines.
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range t.Sets {
		sep()
		flags := "interval"
		if s.Timeout {
			flags = "timeout"
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.Type)
		if s.Size > 0 {
			fmt.Fprintf(&b, "\t\tsize %d\n", s.Size)
		}
		if !s.Hash {
			fmt.Fprintf(&b, "\t\tflags %s\n", flags)
		}
		var els []string
		for _, e := range s.Elements {
			els = append(els, e.String())
		}
		for _, v := range s.Values {
			els = append(els, v.String())
		}
		if len(els) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(els, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.Chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy %s;\n", c.Type, c.Hook, priorityName(c.Type, c.Hook, c.Priority), c.Policy)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// String renders one rule in nft syntax.
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Limit != nil {
		parts = append(parts, fmt.Sprintf("limit rate %d/second burst %d packets", r.Limit.Rate, r.Limit.Burst))
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.Log != nil {
		parts = append(parts, fmt.Sprintf("log prefix %q", r.Log.Prefix))
	}
	switch r.Verdict {
	case VerdictNone:
	case VerdictReject:
		parts = append(parts, "reject with icmpx admin-prohibited")
	case VerdictRejectRST:
		parts = append(parts, "reject with tcp reset")
	default:
		parts = append(parts, string(r.Verdict))
	}
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

// String renders one match in nft syntax.
func (m Match) String() string {
	switch m.Kind {
	case MatchIIFName:
		return fmt.Sprintf("iifname %q", m.Value)
	case MatchOIFName:
		return fmt.Sprintf("oifname %q", m.Value)
	case MatchIIFPrefix:
		return fmt.Sprintf("iifname %q", m.Value+"*")
	case MatchOIFPrefix:
		return fmt.Sprintf("oifname %q", m.Value+"*")
	case MatchCtState:
		return "ct state established,related"
	case MatchDaddr4Set:
		return "ip daddr @" + m.Value
	case MatchDaddr6Set:
		return "ip6 daddr @" + m.Value
	case MatchSaddr4:
		return "ip saddr " + m.Value
	case MatchTCPDport:
		return "tcp dport " + m.Value
	case MatchL4TCP:
		return "meta l4proto tcp"
	case MatchDaddrTCPDport4Set:
		return "ip daddr . tcp dport @" + m.Value
	case MatchDaddrUDPDport4Set:
		return "ip daddr . udp dport @" + m.Value
	case MatchDaddrTCPDport6Set:
		return "ip6 daddr . tcp dport @" + m.Value
	case MatchDaddrUDPDport6Set:
		return "ip6 daddr . udp dport @" + m.Value
	case MatchSkUID:
		return "meta skuid " + m.Value
	case MatchSkUIDSet:
		return "meta skuid @" + m.Value
	case MatchTCPSyn:
		return "tcp flags syn / syn,ack"
	case MatchTCPDportSet:
		return "tcp dport @" + m.Value
	}
	return fmt.Sprintf("<unknown match %q>", m.Kind)
}

// priorityName prints a base chain priority the way nft does: by its
// standard name when it has one for that chain type and hook.
func priorityName(typ, hook string, prio int) string {
	switch {
	case typ == "filter" && prio == 0:
		return "filter"
	case typ == "nat" && hook == "postrouting" && prio == 100:
		return "srcnat"
	case typ == "nat" && hook == "prerouting" && prio == -100:
		return "dstnat"
	}
	return fmt.Sprint(prio)
}
