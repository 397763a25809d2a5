package netpolicy

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/ocnix/ocnix/internal/atomicfile"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostForwards reports whether the operator made the host a router
// (net.ipv4.ip_forward, which is conf.all.forwarding). ocnix then leaves
// the host's forwarding alone: it records, drops and restores nothing.
func hostForwards() bool { return readSysctl("net.ipv4.conf.all.forwarding") == "1" }

func forwardingKey(dev string) string { return "net.ipv4.conf." + dev + ".forwarding" }

// lockForward serialises changes to the shared forwarding state: setup
// units of many instances run in parallel at boot.
func lockForward() (unlock func(), err error) {
	if err := os.MkdirAll(ForwardStateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", ForwardStateDir, err)
	}
	path := filepath.Join(ForwardStateDir, "forwarding.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// writeForwardState replaces the record atomically, so a crash leaves the
// old or the new record, never half of one.
func writeForwardState(st forwardState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return bug(err)
	}
	return atomicfile.WriteFile(ForwardStateFile, append(b, '\n'), 0o644)
}

// ensureForwarding turns on IPv4 forwarding on the interfaces that replies
// to the instance arrive on, guarded by the shared forward table, and
// registers the instance's listener in the same table (peers_linux.go):
// one batch for the shared table. The
// record is written first and the table second, so no interface is ever
// forwarding without its drop rule in place, and a crash at any point is
// repaired by the next run (which finds the record).
func ensureForwarding(host *netlink.Handle, p Plan) error {
	unlock, err := lockForward()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := readForwardState()
	if err != nil {
		return err
	}
	want := forwardState{Enabled: slices.Clone(st.Enabled)}
	if hostForwards() {
		// The operator routes on purpose: forget what we enabled, so that
		// their forwarding is neither dropped nor switched off later.
		want.Enabled = nil
	} else {
		devs, err := ReplyDevices(host, replyRanges(p))
		if err != nil {
			return err
		}
		for _, d := range devs {
			if !slices.Contains(want.Enabled, d) && readSysctl(forwardingKey(d)) != "1" {
				want.Enabled = append(want.Enabled, d)
			}
		}
		slices.Sort(want.Enabled)
	}
	if !slices.Equal(want.Enabled, st.Enabled) || !fileExists(ForwardStateFile) {
		if err := writeForwardState(want); err != nil {
			return err
		}
	}
	ls, err := updateListeners(p.Instance, p.Listener)
	if err != nil {
		return fmt.Errorf("peer guard: %w", err)
	}
	if err := applyTable(SharedTable(want.Enabled, ls), -1); err != nil {
		return fmt.Errorf("shared table: %w", err)
	}
	for _, d := range want.Enabled {
		if _, err := host.LinkByName(d); err != nil {
			continue // gone (unplugged, renamed): nothing to forward on
		}
		if err := writeSysctl(Sysctl{Key: forwardingKey(d), Value: "1"}); err != nil {
			return err
		}
	}
	return nil
}

// replyRanges are the destinations whose replies must be forwarded back to
// the instance. Names in outboundAllowDomains may resolve to any address the
// resolver does not refuse, so with domains that is all of IPv4: the
// interfaces of the routes that could carry an answer's address (the
// default route's among them), still guarded by the forward table.
func replyRanges(p Plan) []Interval {
	if p.DNS == nil {
		return p.Allow4
	}
	return []Interval{{First: netip.IPv4Unspecified(), Last: netip.AddrFrom4([4]byte{255, 255, 255, 255})}}
}

// restoreForwarding writes forwarding=0 on each interface in st that
// ocnix turned on and that is still 1, unless the operator has made the
// host a router meanwhile (their decision wins). The caller holds the lock
// and has checked that no instance veth is left: the others may need the
// same interfaces.
func restoreForwarding(st forwardState) error {
	if hostForwards() {
		return nil
	}
	var errs []error
	for _, d := range st.Enabled {
		if readSysctl(forwardingKey(d)) != "1" {
			continue // gone, or someone switched it off already
		}
		if err := writeSysctl(Sysctl{Key: forwardingKey(d), Value: "0"}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReplyDevices returns the host interfaces that replies from allow4 can
// arrive on: the devices of the unicast routes (per routing table) that are
// the longest match for some allowed address, plus what a route lookup of
// each interval's first address picks (policy routing). A default route
// counts only when part of an allowed range is not covered by a more
// specific route, so allowing one LAN does not switch on forwarding on
// the uplink. The loopback and the instances' own veths are left out. It
// needs no privileges.
func ReplyDevices(h *netlink.Handle, allow4 []Interval) ([]string, error) {
	if len(allow4) == 0 {
		return nil, nil
	}
	routes, err := dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list host routes: %w", err)
	}
	byTable := map[int][]v4route{}
	var local []v4route // the local table is consulted before every other
	for _, r := range routes {
		vr, ok := toV4route(r)
		if !ok || !routeOverlapsAllowed(vr, allow4) {
			continue // cannot be, nor hide, the route of an allowed address
		}
		if r.Table == unix.RT_TABLE_LOCAL {
			local = append(local, vr)
		} else {
			byTable[r.Table] = append(byTable[r.Table], vr)
		}
	}
	idx := map[int]bool{}
	add := func(r netlink.Route) {
		if r.LinkIndex > 0 {
			idx[r.LinkIndex] = true
		}
		for _, nh := range r.MultiPath {
			idx[nh.LinkIndex] = true
		}
	}
	for _, rs := range byTable {
		cover := append(slices.Clone(local), rs...)
		for _, r := range rs {
			if r.route.Type == unix.RTN_UNICAST && servesSomeOf(r, cover, allow4) {
				add(r.route)
			}
		}
	}
	for i, iv := range allow4 {
		if i == diagnoseMaxLookups {
			break
		}
		if rs, err := h.RouteGet(iv.First.AsSlice()); err == nil {
			for _, r := range rs {
				add(r)
			}
		}
	}
	var out []string
	for i := range idx {
		l, err := h.LinkByIndex(i)
		if err != nil {
			continue
		}
		a := l.Attrs()
		if a.Flags&unix.IFF_LOOPBACK != 0 || strings.HasPrefix(a.Alias, aliasPrefix) || strings.HasPrefix(a.Name, vethPrefix) {
			continue
		}
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out, nil
}

// v4route is a route with its destination as an inclusive uint32 range.
type v4route struct {
	route       netlink.Route
	bits        int
	first, last uint32
}

func toV4route(r netlink.Route) (v4route, bool) {
	vr := v4route{route: r, first: 0, last: math.MaxUint32}
	if r.Dst == nil {
		return vr, true
	}
	ip4 := r.Dst.IP.To4()
	ones, bits := r.Dst.Mask.Size()
	if ip4 == nil || bits != 32 {
		return vr, false
	}
	mask := uint32(math.MaxUint32)
	if ones < 32 {
		mask = ^(uint32(math.MaxUint32) >> ones)
	}
	vr.bits = ones
	vr.first = binary.BigEndian.Uint32(ip4) & mask
	vr.last = vr.first | ^mask
	return vr, true
}

func routeOverlapsAllowed(r v4route, allow4 []Interval) bool {
	for _, iv := range allow4 {
		if iv.First.Is4() && r.first <= v4(iv.Last) && v4(iv.First) <= r.last {
			return true
		}
	}
	return false
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// servesSomeOf reports whether r is the longest match for at least one
// allowed address: some part of r ∩ allow4 is not covered by a more
// specific route in cover.
func servesSomeOf(r v4route, cover []v4route, allow4 []Interval) bool {
	for _, iv := range allow4 {
		if !iv.First.Is4() {
			continue
		}
		lo, hi := max(r.first, v4(iv.First)), min(r.last, v4(iv.Last))
		if lo > hi {
			continue
		}
		var more [][2]uint32
		for _, c := range cover {
			if c.bits > r.bits && c.first <= hi && lo <= c.last {
				more = append(more, [2]uint32{c.first, c.last})
			}
		}
		slices.SortFunc(more, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
		next := uint64(lo) // the first address not known to be covered
		for _, m := range more {
			if uint64(m[0]) > next {
				break // a gap: r is the longest match for next
			}
			next = max(next, uint64(m[1])+1)
		}
		if next <= uint64(hi) {
			return true
		}
	}
	return false
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// forwardDropChains lists the forward base chains with policy drop in
// tables other than ours: each one drops instance egress unless it
// accepts iifname "oc-*" itself (an accept in our chain cannot override
// it). It needs CAP_NET_ADMIN; without it the answer is nil.
func forwardDropChains() []string {
	c, err := nftables.New()
	if err != nil {
		return nil
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil
	}
	var out []string
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		if ch.Table.Name == ForwardTableName && ch.Table.Family == nftables.TableFamilyINet {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s chain %s", familyName(ch.Table.Family), ch.Table.Name, ch.Name))
	}
	return out
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprint(f)
}

// forwardTablePresent reports whether the shared forward table exists
// (CAP_NET_ADMIN; without it, true: nothing to warn about that we know).
func forwardTablePresent() bool {
	c, err := nftables.New()
	if err != nil {
		return true
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return true
	}
	for _, t := range tables {
		if t.Name == ForwardTableName {
			return true
		}
	}
	return false
}
