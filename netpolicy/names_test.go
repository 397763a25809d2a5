package netpolicy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/names"
)

func TestHostVethNameFitsIFNAMSIZAndIsDistinct(t *testing.T) {
	seen := map[string]string{}
	for i := 0; i < 200000; i++ {
		n := fmt.Sprintf("project-%d", i)
		v := HostVethName(n)
		if len(v) != ifNameMax || !isOwnedVeth(v) {
			t.Fatalf("HostVethName(%q) = %q: want %d chars with prefix %q", n, v, ifNameMax, vethPrefix)
		}
		if other, dup := seen[v]; dup {
			t.Fatalf("HostVethName collision: %q and %q both give %q", other, n, v)
		}
		seen[v] = n
	}
	// Deterministic: a second setup must find the veth the first one made.
	if a, b := HostVethName("x"), HostVethName(strings.Clone("x")); a != b {
		t.Fatalf("HostVethName is not deterministic: %q, then %q", a, b)
	}
	// The longest allowed name still gives 15 characters.
	if v := HostVethName(strings.Repeat("z", names.MaxInstance)); len(v) != ifNameMax {
		t.Fatalf("long name: %q", v)
	}
}

func TestPoolSubnet(t *testing.T) {
	// A realistic host: a few hundred instances with typical names get
	// distinct /30s. (A hash cannot promise this for every set of names;
	// Ensure detects the rare clash, see TestPoolCollisionsFollowBirthdayBound.)
	seen := map[string]string{}
	for _, prefix := range []string{"project-", "web", "t-"} {
		for i := 0; i < 100; i++ {
			n := fmt.Sprintf("%s%d", prefix, i)
			s := PoolSubnet(n)
			switch {
			case !PoolPrefix.Contains(s.Addr()) || s.Bits() != 30 || s.Masked() != s:
				t.Fatalf("PoolSubnet(%q) = %s: not a /30 in %s", n, s, PoolPrefix)
			case overlapsAny(s, poolReserved):
				t.Fatalf("PoolSubnet(%q) = %s overlaps a reserved range", n, s)
			}
			if other, dup := seen[s.String()]; dup {
				t.Fatalf("PoolSubnet collision: %q and %q both give %s", other, n, s)
			}
			seen[s.String()] = n
			if PoolSubnet(n) != s {
				t.Fatalf("PoolSubnet(%q) not deterministic", n)
			}
		}
	}
}

// TestPoolCollisionsFollowBirthdayBound documents the limit of a hashed
// pool: with 2^20 slots, n names share a slot about n²/2^21 times. The
// count must stay near that (a bad hash would cluster), which is why
// Ensure checks the host's routes before using a derived subnet.
func TestPoolCollisionsFollowBirthdayBound(t *testing.T) {
	const n = 10000
	seen := map[string]bool{}
	collisions := 0
	for i := 0; i < n; i++ {
		s := PoolSubnet(fmt.Sprintf("instance-%d", i)).String()
		if seen[s] {
			collisions++
		}
		seen[s] = true
	}
	expected := float64(n) * float64(n) / float64(uint64(1)<<21)
	t.Logf("%d names: %d shared slots (birthday expectation %.1f)", n, collisions, expected)
	if float64(collisions) > 2*expected+10 {
		t.Errorf("%d collisions, far above the expected %.1f: the slot hash clusters", collisions, expected)
	}
}

func TestParseSubnet(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{in: "10.99.0.0/30", ok: true},
		{in: "100.64.0.4/30", ok: true},
		{in: "10.99.0.1/30"},
		{in: "10.99.0.0/29"},
		{in: "fd00::/126"},
		{in: "127.0.0.0/30"},
		{in: "169.254.169.252/30"},
		{in: "224.0.0.0/30"},
		{in: "nonsense"},
	} {
		if _, err := parseSubnet(tc.in); (err == nil) != tc.ok {
			t.Errorf("parseSubnet(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
