package netpolicy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Names and paths of owned objects. Everything ocnix creates on the host is
// derivable from the instance name alone, so Teardown needs nothing but the
// plan and never has to guess. The name itself obeys the one rule of
// internal/names (see Check), whose 23 characters keep the log prefix far
// below the kernel's NF_LOG_PREFIXLEN (128).
const (
	// NetnsPrefix prefixes the named network namespace: opencode-<name>.
	NetnsPrefix = "opencode-"
	// NetnsRunDir is where iproute2 (and we) bind-mount named namespaces.
	NetnsRunDir = "/run/netns"
	// NetnsEtcDir holds per-namespace /etc overrides (ip netns exec convention).
	NetnsEtcDir = "/etc/netns"
	// HostTablePrefix prefixes the host-side nft table: ip ocnix-<name>.
	HostTablePrefix = "ocnix-"
	// FilterTable is the egress filter table inside the instance netns.
	FilterTable = "opencode"
	// vethPrefix prefixes the host-side veth; the rest is a hash of the name.
	vethPrefix = "oc-"
	// PeerVeth is the veth end inside the netns. It lives alone in its
	// namespace, so a fixed name is safe; systemd-nspawn uses the same one.
	PeerVeth = "host0"
	// ifNameMax is IFNAMSIZ (16) minus the terminating NUL.
	ifNameMax = 15
	// LogPrefixSuffix follows "opencode-<name>" in blocked-attempt log lines.
	LogPrefixSuffix = "-blocked: "
	// aliasPrefix marks the host veth as ours (IFLA_IFALIAS "ocnix:<name>"),
	// so Ensure can tell a hash collision from its own leftovers.
	aliasPrefix = "ocnix:"
)

// NetnsName returns the named netns of an instance: opencode-<name>.
func NetnsName(instance string) string { return NetnsPrefix + instance }

// HostTableName returns the host-side nft table of an instance.
func HostTableName(instance string) string { return HostTablePrefix + instance }

// LogPrefix returns the nft log prefix for blocked attempts.
func LogPrefix(instance string) string { return NetnsPrefix + instance + LogPrefixSuffix }

// HostVethName derives the host-side veth name: "oc-" plus 12 hex digits
// (48 bits) of SHA-256 of the name. It is always exactly 15 characters
// (IFNAMSIZ-1). A readable name would have to be truncated, and truncated
// names collide ("project-alpha-1" vs "project-alpha-2"); 48 bits of hash
// make a collision on one host vanishingly unlikely, and Ensure still
// detects one through the link alias rather than adopting a foreign link.
func HostVethName(instance string) string {
	sum := sha256.Sum256([]byte("ocnix-veth:" + instance))
	return vethPrefix + hex.EncodeToString(sum[:6])
}

// isOwnedVeth reports whether an interface name has the shape of an ocnix
// host veth (used by tests and cleanup to stay away from other links).
func isOwnedVeth(name string) bool {
	return strings.HasPrefix(name, vethPrefix) && len(name) == ifNameMax
}

// The address pool. Each instance gets one /30 out of 100.64.0.0/10
// (RFC 6598 shared address space): 2^20 slots. The host side takes .1, the
// netns side .2. RFC 6598 space is never a destination on the public
// internet and is rarely used for LANs, unlike RFC 1918 space, which
// is where LANs, Docker and Kubernetes live.
var (
	PoolPrefix = netip.MustParsePrefix("100.64.0.0/10")
	// poolReserved are ranges inside the pool that real software uses on
	// hosts. Tailscale's MagicDNS (100.100.100.100) and the ChromeOS /
	// Tailscale reserved block must never be routed into a veth.
	poolReserved = []netip.Prefix{
		netip.MustParsePrefix("100.100.100.96/28"),
		netip.MustParsePrefix("100.115.92.0/23"),
	}
)

const slotBits = 2 // a /30

// PoolSubnet returns the derived /30 of an instance: SHA-256 of the name
// picks one of the 2^20 slots of PoolPrefix. Slots overlapping
// poolReserved are skipped by rehashing with a counter, so the result is a
// pure function of the name.
//
// A hash cannot guarantee that two names never share a slot (birthday
// bound: about n²/2^21 for n instances, ~0.1% for 50). Ensure therefore
// refuses to use a subnet that is already routed on the host by something
// other than this instance's veth, naming the conflict; the operator then
// sets networkIsolation.subnet for one of the two.
func PoolSubnet(instance string) netip.Prefix {
	slots := uint32(1) << (32 - PoolPrefix.Bits() - slotBits)
	base := binary.BigEndian.Uint32(PoolPrefix.Addr().AsSlice())
	for i := 0; ; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("ocnix-pool:%d:%s", i, instance)))
		slot := binary.BigEndian.Uint32(sum[:4]) % slots
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+slot<<slotBits)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 32-slotBits)
		if !overlapsAny(p, poolReserved) {
			return p
		}
	}
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// parseSubnet validates an operator-chosen /30 for the veth pair.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse subnet %q: %w", s, err)
	}
	a := p.Addr()
	switch {
	case !a.Is4():
		return netip.Prefix{}, fmt.Errorf("subnet %q: must be an IPv4 /30", s)
	case p.Bits() != 32-slotBits:
		return netip.Prefix{}, fmt.Errorf("subnet %q: must be a /30, got /%d", s, p.Bits())
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("subnet %q: host bits set; did you mean %s?", s, p.Masked())
	case a.IsLoopback(), a.IsMulticast(), a.IsUnspecified(), a.IsLinkLocalUnicast(),
		p.Overlaps(netip.MustParsePrefix("0.0.0.0/8")), p.Overlaps(netip.MustParsePrefix("240.0.0.0/4")):
		return netip.Prefix{}, fmt.Errorf("subnet %q: not a usable unicast range", s)
	}
	return p, nil
}

// pairAddrs returns the host-side (.1) and netns-side (.2) addresses of a /30.
func pairAddrs(subnet netip.Prefix) (host, peer netip.Prefix) {
	h := subnet.Addr().Next()
	return netip.PrefixFrom(h, subnet.Bits()), netip.PrefixFrom(h.Next(), subnet.Bits())
}
