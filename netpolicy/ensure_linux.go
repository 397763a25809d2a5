package netpolicy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ocnix/ocnix/internal/atomicfile"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ensure makes the host match p: named netns, veth pair, addresses,
// routes, sysctls, the filter inside the netns, the host masquerade table
// and the netns resolv.conf. It needs root, must be called from the host
// network namespace, and is idempotent: every step compares or replaces,
// so running it again after a crash at any point converges.
//
// Each nft table is replaced atomically in one batch (one Flush per
// namespace), which also resets its counters.
func Ensure(p Plan) error {
	if !p.Enable {
		return nil
	}
	if err := ensure(p); err != nil {
		return fmt.Errorf("netpolicy: ensure %s: %w", p.Netns, err)
	}
	return nil
}

func ensure(p Plan) error {
	if p.Netns == "" || p.HostVeth == "" || !p.Subnet.IsValid() || p.ResolvConfContent == "" ||
		p.HostSysctls.LogAllNetns.Key == "" || p.NetnsSysctls.DefaultNoIPv6.Key == "" {
		return bug(errors.New("plan was not made by Build"))
	}
	// Host-wide, before anything logs. Only the initial network namespace
	// has it: on a host that is itself a container (systemd-nspawn, the
	// systemd test tier) it cannot be set, and `status` reports that
	// blocked attempts are not logged.
	if err := writeSysctl(p.HostSysctls.LogAllNetns); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	host, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open host netlink: %w", err)
	}
	defer host.Close()
	// Check for a subnet clash before creating anything, so a clashing
	// instance leaves nothing behind.
	ourIndex := 0
	if l, err := host.LinkByName(p.HostVeth); err == nil {
		ourIndex = l.Attrs().Index
	}
	if err := checkSubnetFree(host, p, ourIndex); err != nil {
		return err
	}
	if err := ensureNetns(p.NetnsPath); err != nil { // makes /run/netns shared too
		return err
	}
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.NetnsPath, err)
	}
	defer ns.Close()

	// Interfaces created in the netns start without IPv6, so the peer
	// never gets even a link-local address.
	if err := inNetns(int(ns), func() error { return writeSysctl(p.NetnsSysctls.DefaultNoIPv6) }); err != nil {
		return fmt.Errorf("in netns: %w", err)
	}

	// The filter goes in before the netns has any link to the outside, so
	// that no moment exists (not even after a crash here) in which the
	// netns has a route and no filter. The rules match interfaces by name,
	// so they do not need the veth to exist.
	if err := applyTable(p.Filter, int(ns), carryDNSEntries(p)...); err != nil {
		return fmt.Errorf("in netns: %w", err)
	}

	inner, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netns netlink: %w", err)
	}
	defer inner.Close()

	hostLink, err := ensureVeth(host, inner, p, ns)
	if err != nil {
		return err
	}
	if err := ensureHostSide(host, hostLink, p); err != nil {
		return err
	}
	if err := ensureNetnsSide(inner, p); err != nil {
		return err
	}
	if err := inNetns(int(ns), func() error {
		if err := writeSysctl(p.NetnsSysctls.PeerNoIPv6); err != nil {
			return err
		}
		if s := p.NetnsSysctls.UnprivilegedPortStart; s != nil {
			return writeSysctl(*s)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("in netns: %w", err)
	}
	if err := applyTable(p.Host, -1); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if err := ensureForwarding(host, p); err != nil {
		return fmt.Errorf("host forwarding: %w", err)
	}
	return writeResolvConf(p)
}

// carryDNSEntries returns the DNS set elements worth keeping when Ensure
// replaces the filter table of a running instance: those whose name still
// matches a rule that allows their port, with the time they had left.
// Without them every address a client resolved before the setup would be
// rejected until it resolves again, which clients that cache answers do
// only after the TTL. Nothing is carried from a table that is not there.
func carryDNSEntries(p Plan) []DNSEntry {
	if p.DNS == nil {
		return nil
	}
	old, err := DNSEntries(p)
	if err != nil {
		return nil
	}
	var keep []DNSEntry
	for _, e := range old {
		if e.Expires < time.Second || !slices.Contains(matchEntryName(p.Domains, e.Name), e.Port) {
			continue
		}
		e.Timeout, e.Expires = min(e.Expires, p.DNS.MaxTTL), 0
		keep = append(keep, e)
	}
	return keep
}

func aliasOf(p Plan) string { return aliasPrefix + p.Instance }

// ensureVeth returns the host end of the instance's veth pair, creating
// the pair (host end in the host netns, peer directly in the instance
// netns, in one netlink request so no half-pair can exist) when missing.
// A host link with our name that belongs to someone else is an error,
// never adopted or deleted.
func ensureVeth(host, inner *netlink.Handle, p Plan, ns netns.NsHandle) (netlink.Link, error) {
	link, err := host.LinkByName(p.HostVeth)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("link %s: %w", p.HostVeth, err)
	}
	if link != nil {
		peerOK := false
		if peer, err := inner.LinkByName(p.PeerVeth); err == nil {
			peerOK = peer.Type() == "veth" && peer.Attrs().ParentIndex == link.Attrs().Index
		}
		alias := link.Attrs().Alias
		switch {
		case peerOK && link.Type() == "veth":
			if alias != aliasOf(p) {
				if err := host.LinkSetAlias(link, aliasOf(p)); err != nil {
					return nil, fmt.Errorf("link %s: set alias: %w", p.HostVeth, err)
				}
			}
			return link, nil
		case alias == aliasOf(p):
			// Ours but broken (peer missing or elsewhere): rebuild.
			if err := host.LinkDel(link); err != nil {
				return nil, fmt.Errorf("link %s: delete stale: %w", p.HostVeth, err)
			}
		default:
			return nil, fmt.Errorf("link %s exists and is not this instance's (alias %q, type %s): a name clash; remove it by hand", p.HostVeth, alias, link.Type())
		}
	}
	// A leftover non-veth host0 in our own netns would block creation.
	if old, err := inner.LinkByName(p.PeerVeth); err == nil {
		if err := inner.LinkDel(old); err != nil {
			return nil, fmt.Errorf("netns link %s: delete stale: %w", p.PeerVeth, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.HostVeth},
		PeerName:      p.PeerVeth,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := host.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("link %s: create veth pair: %w", p.HostVeth, err)
	}
	link, err = host.LinkByName(p.HostVeth)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", p.HostVeth, err)
	}
	// The kernel ignores IFLA_IFALIAS on creation; set it now. A crash in
	// between is repaired by the peerOK branch above on the next run.
	if err := host.LinkSetAlias(link, aliasOf(p)); err != nil {
		return nil, fmt.Errorf("link %s: set alias: %w", p.HostVeth, err)
	}
	return link, nil
}

// checkSubnetFree refuses a subnet that any route on the host (any table)
// already covers, other than routes of our own veth. This catches two
// instances hashed into the same pool slot and a pool range already used by
// the host (a Tailscale 100.64.0.0/10 route, for example). Default routes
// overlap everything and are ignored.
func checkSubnetFree(host *netlink.Handle, p Plan, ourIndex int) error {
	routes, err := dump(func() ([]netlink.Route, error) {
		return host.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == ourIndex {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		dst := netip.PrefixFrom(a, ones)
		if !dst.Overlaps(p.Subnet) {
			continue
		}
		dev := fmt.Sprint(r.LinkIndex)
		if l, err := host.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
			if al := l.Attrs().Alias; al != "" {
				dev += " (" + al + ")"
			}
		}
		return fmt.Errorf("subnet %s (%s): overlaps host route %s dev %s; set networkIsolation.subnet to a free /30", p.Subnet, p.SubnetSource, dst, dev)
	}
	return nil
}

// ensureAddr makes want the only IPv4 address of link.
func ensureAddr(h *netlink.Handle, link netlink.Link, want netip.Prefix) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.Addr().AsSlice(), Mask: net.CIDRMask(want.Bits(), 32)}}
	if err := h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("link %s: address %s: %w", link.Attrs().Name, want, err)
	}
	have, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("link %s: list addresses: %w", link.Attrs().Name, err)
	}
	for _, a := range have {
		if a.IPNet.String() == addr.IPNet.String() {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("link %s: delete stale address %s: %w", link.Attrs().Name, a.IPNet, err)
		}
	}
	return nil
}

func ensureHostSide(host *netlink.Handle, link netlink.Link, p Plan) error {
	// Before the link is up.
	for _, s := range []Sysctl{p.HostSysctls.VethForwarding, p.HostSysctls.VethNoIPv6} {
		if err := writeSysctl(s); err != nil {
			return err
		}
	}
	if err := ensureAddr(host, link, p.HostAddr); err != nil {
		return err
	}
	if err := host.LinkSetUp(link); err != nil {
		return fmt.Errorf("link %s: set up: %w", p.HostVeth, err)
	}
	return nil
}

func ensureNetnsSide(inner *netlink.Handle, p Plan) error {
	lo, err := inner.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netns link lo: %w", err)
	}
	if err := inner.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netns link lo: set up: %w", err)
	}
	peer, err := inner.LinkByName(p.PeerVeth)
	if err != nil {
		return fmt.Errorf("netns link %s: %w", p.PeerVeth, err)
	}
	if err := ensureAddr(inner, peer, p.PeerAddr); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	if err := inner.LinkSetUp(peer); err != nil {
		return fmt.Errorf("netns link %s: set up: %w", p.PeerVeth, err)
	}
	def := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: p.HostAddr.Addr().AsSlice(), Dst: nil}
	if err := inner.RouteReplace(def); err != nil {
		return fmt.Errorf("netns: default route via %s: %w", p.HostAddr.Addr(), err)
	}
	return nil
}

// writeResolvConf writes the plan's netns resolv.conf atomically, so a
// reader never sees half a file.
func writeResolvConf(p Plan) error {
	dir := filepath.Dir(p.ResolvConf)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return atomicfile.WriteFile(p.ResolvConf, []byte(p.ResolvConfContent), 0o644)
}
