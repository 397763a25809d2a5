package netpolicy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Interval is an inclusive address range [First, Last] of one family. The
// allow sets hold intervals rather than prefixes because merging overlapping
// or adjacent CIDRs (10.0.0.0/8 + 11.0.0.0/8) yields ranges that are not
// prefixes; the kernel's interval sets store ranges anyway.
type Interval struct {
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
}

// String renders the interval the way `nft list` prints an interval set
// element: a bare address for a single host, a prefix when the range is
// exactly one CIDR, and "first-last" otherwise.
func (iv Interval) String() string {
	if iv.First == iv.Last {
		return iv.First.String()
	}
	if p, ok := iv.Prefix(); ok {
		return p.String()
	}
	return iv.First.String() + "-" + iv.Last.String()
}

// Prefix reports the CIDR that covers exactly this interval, if there is one.
func (iv Interval) Prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= iv.First.BitLen(); bits++ {
		p := netip.PrefixFrom(iv.First, bits)
		if p.Masked().Addr() == iv.First && lastAddr(p) == iv.Last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Contains reports whether a lies in the interval.
func (iv Interval) Contains(a netip.Addr) bool {
	return a.BitLen() == iv.First.BitLen() && iv.First.Compare(a) <= 0 && a.Compare(iv.Last) <= 0
}

// lastAddr returns the highest address in p (host bits all set).
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	for i := p.Bits(); i < p.Addr().BitLen(); i++ {
		b[off+i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// ParseCIDR parses one allow-list entry. It is strict on purpose: an entry
// with host bits set ("10.0.0.1/8") is ambiguous (the host or the network?),
// and a v4-mapped v6 prefix would silently land in the wrong set, so both
// are errors rather than guesses.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse cidr %q: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("parse cidr %q: v4-mapped IPv6 prefix; write the IPv4 prefix instead", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("parse cidr %q: host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// MergeCIDRs parses cidrs and returns the IPv4 and IPv6 intervals they cover,
// sorted, with overlapping and adjacent ranges merged. Duplicates and
// contained prefixes disappear. The result is the minimal interval list, so
// two inputs that allow the same addresses yield the same sets.
func MergeCIDRs(cidrs []string) (v4, v6 []Interval, err error) {
	for _, s := range cidrs {
		p, err := ParseCIDR(s)
		if err != nil {
			return nil, nil, err
		}
		iv := Interval{First: p.Addr(), Last: lastAddr(p)}
		if p.Addr().Is4() {
			v4 = append(v4, iv)
		} else {
			v6 = append(v6, iv)
		}
	}
	return MergeIntervals(v4), MergeIntervals(v6), nil
}

// MergeIntervals sorts ivs by start and merges overlapping or adjacent
// intervals. All intervals must be of one address family. It does not
// modify ivs.
func MergeIntervals(ivs []Interval) []Interval {
	if len(ivs) == 0 {
		return nil
	}
	s := slices.Clone(ivs)
	slices.SortFunc(s, func(a, b Interval) int {
		return cmp.Or(a.First.Compare(b.First), a.Last.Compare(b.Last))
	})
	out := []Interval{s[0]}
	for _, iv := range s[1:] {
		cur := &out[len(out)-1]
		// Adjacent counts as mergeable: cur.Last.Next() == iv.First. Next()
		// is invalid at the top of the space, where nothing can follow.
		next := cur.Last.Next()
		if iv.First.Compare(cur.Last) <= 0 || (next.IsValid() && iv.First == next) {
			if iv.Last.Compare(cur.Last) > 0 {
				cur.Last = iv.Last
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// containsAddr reports whether a is inside any of ivs.
func containsAddr(ivs []Interval, a netip.Addr) bool {
	for _, iv := range ivs {
		if iv.Contains(a) {
			return true
		}
	}
	return false
}
