package netpolicy

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func iv(first, last string) Interval {
	return Interval{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
}

func TestMergeCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want4   []Interval
		want6   []Interval
		wantErr string
	}{
		{name: "EmptyIsNoSets", in: nil},
		{name: "DuplicatesCollapse", in: []string{"10.0.0.0/8", "10.0.0.0/8"}, want4: []Interval{iv("10.0.0.0", "10.255.255.255")}},
		{name: "ContainedPrefixDisappears", in: []string{"10.1.2.0/24", "10.0.0.0/8"}, want4: []Interval{iv("10.0.0.0", "10.255.255.255")}},
		{name: "OverlappingMerge", in: []string{"10.0.0.0/23", "10.0.1.0/24", "10.0.1.128/25"}, want4: []Interval{iv("10.0.0.0", "10.0.1.255")}},
		{name: "AdjacentMergeIntoRange", in: []string{"10.0.0.0/24", "10.0.1.0/25"}, want4: []Interval{iv("10.0.0.0", "10.0.1.127")}},
		{name: "AdjacentMergeIntoPrefix", in: []string{"11.0.0.0/8", "10.0.0.0/8"}, want4: []Interval{iv("10.0.0.0", "11.255.255.255")}},
		{name: "DisjointStaySortedAndApart", in: []string{"192.0.2.0/24", "10.0.0.1/32", "10.0.0.3/32"}, want4: []Interval{iv("10.0.0.1", "10.0.0.1"), iv("10.0.0.3", "10.0.0.3"), iv("192.0.2.0", "192.0.2.255")}},
		{name: "FamiliesSplit", in: []string{"2001:db8::/32", "10.0.0.0/8", "2001:db8:1::/48"}, want4: []Interval{iv("10.0.0.0", "10.255.255.255")}, want6: []Interval{iv("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")}},
		{name: "TopOfSpaceMergesWithoutOverflow", in: []string{"255.255.255.255/32", "255.255.255.0/25", "255.255.255.128/25"}, want4: []Interval{iv("255.255.255.0", "255.255.255.255")}},
		{name: "WholeSpace", in: []string{"0.0.0.0/0", "10.0.0.0/8", "::/0"}, want4: []Interval{iv("0.0.0.0", "255.255.255.255")}, want6: []Interval{iv("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}},
		{name: "HostBitsRejected", in: []string{"10.0.0.1/8"}, wantErr: "did you mean 10.0.0.0/8"},
		{name: "V4MappedRejected", in: []string{"::ffff:10.0.0.0/104"}, wantErr: "v4-mapped"},
		{name: "GarbageRejected", in: []string{"example.com"}, wantErr: `parse cidr "example.com"`},
		{name: "BareAddressRejected", in: []string{"10.0.0.1"}, wantErr: "no '/'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g4, g6, err := MergeCIDRs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want4, g4, netipCmp); diff != "" {
				t.Errorf("v4 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want6, g6, netipCmp); diff != "" {
				t.Errorf("v6 (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMergeIntervalsPreservesMembership checks, on random input, that the
// merged list is sorted, has neither overlaps nor adjacency, and contains
// exactly the addresses the raw prefixes contain.
func TestMergeIntervalsPreservesMembership(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randAddr := func() netip.Addr {
		// A small space (10.0.0.0/20) so that overlaps are frequent.
		return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(16)), byte(r.IntN(256))})
	}
	for round := 0; round < 200; round++ {
		var raw []netip.Prefix
		var cidrs []string
		for i := 0; i < 1+r.IntN(30); i++ {
			p := netip.PrefixFrom(randAddr(), 20+r.IntN(13)).Masked()
			raw = append(raw, p)
			cidrs = append(cidrs, p.String())
		}
		m, _, err := MergeCIDRs(cidrs)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(m); i++ {
			if m[i-1].Last.Next().Compare(m[i].First) >= 0 {
				t.Fatalf("round %d: %v and %v overlap or touch", round, m[i-1], m[i])
			}
		}
		for i := 0; i < 300; i++ {
			a := randAddr()
			want := false
			for _, p := range raw {
				want = want || p.Contains(a)
			}
			if got := containsAddr(m, a); got != want {
				t.Fatalf("round %d: %s: merged says %v, prefixes say %v (%v)", round, a, got, want, cidrs)
			}
		}
	}
}

func TestIntervalString(t *testing.T) {
	for _, tc := range []struct {
		iv   Interval
		want string
	}{
		{iv: iv("10.0.0.1", "10.0.0.1"), want: "10.0.0.1"},
		{iv: iv("10.0.0.0", "10.0.1.255"), want: "10.0.0.0/23"},
		{iv: iv("10.0.0.0", "10.0.1.127"), want: "10.0.0.0-10.0.1.127"},
		{iv: iv("10.0.0.1", "10.0.0.2"), want: "10.0.0.1-10.0.0.2"},
		{iv: iv("0.0.0.0", "255.255.255.255"), want: "0.0.0.0/0"},
		{iv: iv("2001:db8::", "2001:db8::ffff"), want: "2001:db8::/112"},
	} {
		if got := tc.iv.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.iv, got, tc.want)
		}
	}
}

// netipCmp lets cmp compare netip values (they have unexported fields).
var netipCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}
