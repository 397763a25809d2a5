package netpolicy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// lowered is a Table translated into google/nftables objects. Lowering is
// pure (no netlink), so it is unit-tested; apply only queues these objects.
type lowered struct {
	table  *nftables.Table
	sets   []loweredSet
	chains []*nftables.Chain
	rules  []*nftables.Rule
}

type loweredSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// lower translates t. Set IDs are assigned here (1, 2, …, unique within the
// table) so that rules can refer to sets created in the same batch.
func lower(t Table) (lowered, error) {
	var l lowered
	fam, err := tableFamily(t.Family)
	if err != nil {
		return l, fmt.Errorf("table %s: %w", t.Name, err)
	}
	l.table = &nftables.Table{Name: t.Name, Family: fam}
	sets := map[string]*nftables.Set{}
	for i, s := range t.Sets {
		ls, err := lowerSet(l.table, s, uint32(i+1))
		if err != nil {
			return l, fmt.Errorf("table %s: set %s: %w", t.Name, s.Name, err)
		}
		sets[s.Name] = ls.set
		l.sets = append(l.sets, ls)
	}
	for _, c := range t.Chains {
		nc, err := lowerChain(l.table, c)
		if err != nil {
			return l, fmt.Errorf("table %s: chain %s: %w", t.Name, c.Name, err)
		}
		l.chains = append(l.chains, nc)
		for _, r := range c.Rules {
			exprs, err := lowerRule(fam, r, sets)
			if err != nil {
				return l, fmt.Errorf("table %s: chain %s: rule %s: %w", t.Name, c.Name, r.Key, err)
			}
			l.rules = append(l.rules, &nftables.Rule{
				Table:    l.table,
				Chain:    nc,
				Exprs:    exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
			})
		}
	}
	return l, nil
}

func tableFamily(f string) (nftables.TableFamily, error) {
	switch f {
	case "inet":
		return nftables.TableFamilyINet, nil
	case "ip":
		return nftables.TableFamilyIPv4, nil
	}
	return 0, bug(fmt.Errorf("unknown family %q", f))
}

func lowerSet(t *nftables.Table, s Set, id uint32) (loweredSet, error) {
	if s.Timeout {
		ns, err := dnsSet(t, s.Name, s.Type)
		if err != nil {
			return loweredSet{}, err
		}
		ns.ID = id
		ns.Size = s.Size
		if len(s.Elements) > 0 {
			return loweredSet{}, bug(fmt.Errorf("timeout set with planned elements"))
		}
		return loweredSet{set: ns}, nil
	}
	if s.Hash {
		return lowerHashSet(t, s, id)
	}
	ns := &nftables.Set{Table: t, Name: s.Name, ID: id, Interval: true}
	switch s.Type {
	case "ipv4_addr":
		ns.KeyType = nftables.TypeIPAddr
	case "ipv6_addr":
		ns.KeyType = nftables.TypeIP6Addr
	default:
		return loweredSet{}, bug(fmt.Errorf("unknown set type %q", s.Type))
	}
	return loweredSet{set: ns, elems: intervalElements(s.Elements)}, nil
}

// The peer guard's key types. A port is 2 bytes in network order; a uid is
// what meta skuid loads, 4 bytes in host order. In a concatenation every
// part is padded to a 4-byte register.
var (
	typeUID       = nftables.TypeUID
	typePortUID   = nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeUID)
	typeInetServc = nftables.TypeInetService
)

// lowerHashSet lowers a plain set of exact keys (SetValue, in nft syntax).
func lowerHashSet(t *nftables.Table, s Set, id uint32) (loweredSet, error) {
	ns := &nftables.Set{Table: t, Name: s.Name, ID: id, Size: s.Size}
	var enc func(parts []string) ([]byte, error)
	switch s.Type {
	case "uid":
		ns.KeyType, ns.KeyByteOrder = typeUID, binaryutil.NativeEndian // what meta skuid loads
		enc = func(p []string) ([]byte, error) {
			if len(p) != 1 {
				return nil, errors.New("want one part")
			}
			return encodeUID(p[0])
		}
	case "inet_service":
		ns.KeyType = typeInetServc
		enc = func(p []string) ([]byte, error) {
			if len(p) != 1 {
				return nil, errors.New("want one part")
			}
			return encodePort(p[0], false)
		}
	case "inet_service . uid":
		ns.KeyType, ns.Concatenation = typePortUID, true
		enc = func(p []string) ([]byte, error) {
			if len(p) != 2 {
				return nil, errors.New("want port . uid")
			}
			port, err := encodePort(p[0], true)
			if err != nil {
				return nil, err
			}
			uid, err := encodeUID(p[1])
			return append(port, uid...), err
		}
	default:
		return loweredSet{}, bug(fmt.Errorf("unknown hash set type %q", s.Type))
	}
	var elems []nftables.SetElement
	for _, v := range s.Values {
		key, err := enc(strings.Split(v.Key, " . "))
		if err != nil {
			return loweredSet{}, bug(fmt.Errorf("element %q: %w", v.Key, err))
		}
		elems = append(elems, nftables.SetElement{Key: key, Comment: v.Comment})
	}
	return loweredSet{set: ns, elems: elems}, nil
}

func encodePort(s string, pad bool) ([]byte, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return nil, err
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(n))
	if pad {
		b = append(b, 0, 0)
	}
	return b, nil
}

func encodeUID(s string) ([]byte, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return nil, err
	}
	return binary.NativeEndian.AppendUint32(nil, uint32(n)), nil
}

// intervalElements encodes intervals the way nft does for interval sets: a
// start element at First and an end element (flag INTERVAL_END) at the
// first address after Last. An interval reaching the top of the address
// space has no end element; the kernel treats it as open-ended.
func intervalElements(ivs []Interval) []nftables.SetElement {
	var out []nftables.SetElement
	for _, iv := range ivs {
		out = append(out, nftables.SetElement{Key: iv.First.AsSlice()})
		if next := iv.Last.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

func lowerChain(t *nftables.Table, c Chain) (*nftables.Chain, error) {
	nc := &nftables.Chain{Name: c.Name, Table: t, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(c.Priority))}
	switch c.Hook {
	case "input":
		nc.Hooknum = nftables.ChainHookInput
	case "output":
		nc.Hooknum = nftables.ChainHookOutput
	case "forward":
		nc.Hooknum = nftables.ChainHookForward
	case "postrouting":
		nc.Hooknum = nftables.ChainHookPostrouting
	default:
		return nil, bug(fmt.Errorf("unknown hook %q", c.Hook))
	}
	switch c.Type {
	case "filter":
		nc.Type = nftables.ChainTypeFilter
	case "nat":
		nc.Type = nftables.ChainTypeNAT
	default:
		return nil, bug(fmt.Errorf("unknown chain type %q", c.Type))
	}
	pol := nftables.ChainPolicyAccept
	if c.Policy == "drop" {
		pol = nftables.ChainPolicyDrop
	}
	nc.Policy = &pol
	return nc, nil
}

// lowerRule emits the expressions in the order Rule.String prints them, so
// `nft list` of the result reads back as the plan's rendering.
func lowerRule(fam nftables.TableFamily, r Rule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var out []expr.Any
	tcp := false // a match that implies meta l4proto tcp came first
	for _, m := range r.Matches {
		switch m.Kind {
		case MatchTCPSyn, MatchL4TCP, MatchTCPDport:
			tcp = true
		case MatchTCPDportSet:
			if !tcp {
				return nil, bug(fmt.Errorf("match %s needs a tcp match before it", m.Kind))
			}
		}
		e, err := lowerMatch(fam, m, sets)
		if err != nil {
			return nil, fmt.Errorf("match %s: %w", m.Kind, err)
		}
		out = append(out, e...)
	}
	if r.Limit != nil {
		out = append(out, &expr.Limit{Type: expr.LimitTypePkts, Rate: r.Limit.Rate, Unit: expr.LimitTimeSecond, Burst: r.Limit.Burst})
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	if r.Log != nil {
		out = append(out, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(r.Log.Prefix)})
	}
	switch r.Verdict {
	case VerdictNone:
	case VerdictAccept:
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	case VerdictDrop:
		out = append(out, &expr.Verdict{Kind: expr.VerdictDrop})
	case VerdictReject:
		out = append(out, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})
	case VerdictRejectRST:
		out = append(out, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case VerdictMasquerade:
		out = append(out, &expr.Masq{})
	default:
		return nil, bug(fmt.Errorf("unknown verdict %q", r.Verdict))
	}
	return out, nil
}

func lowerMatch(fam nftables.TableFamily, m Match, sets map[string]*nftables.Set) ([]expr.Any, error) {
	switch m.Kind {
	case MatchIIFName, MatchOIFName:
		key := expr.MetaKeyIIFNAME
		if m.Kind == MatchOIFName {
			key = expr.MetaKeyOIFNAME
		}
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(m.Value)},
		}, nil
	case MatchIIFPrefix, MatchOIFPrefix:
		key := expr.MetaKeyIIFNAME
		if m.Kind == MatchOIFPrefix {
			key = expr.MetaKeyOIFNAME
		}
		// What nft emits for "oc-*": compare only the prefix bytes, no NUL.
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(m.Value)},
		}, nil
	case MatchCtState:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{
				SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
				Xor:  make([]byte, 4),
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, nil
	case MatchDaddr4Set, MatchDaddr6Set:
		s, ok := sets[m.Value]
		if !ok {
			return nil, bug(fmt.Errorf("set %q not in table", m.Value))
		}
		proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
		if m.Kind == MatchDaddr6Set {
			proto, off, n = unix.NFPROTO_IPV6, 24, 16
		}
		var out []expr.Any
		if fam == nftables.TableFamilyINet {
			// In an inet table "ip daddr" implies "meta nfproto ipv4".
			out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
		}
		return append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		), nil
	case MatchSaddr4:
		a, err := netip.ParseAddr(m.Value)
		if err != nil || !a.Is4() {
			return nil, bug(fmt.Errorf("saddr %q is not an IPv4 address", m.Value))
		}
		var out []expr.Any
		if fam == nftables.TableFamilyINet {
			out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
		}
		return append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
		), nil
	case MatchDaddrTCPDport4Set, MatchDaddrUDPDport4Set, MatchDaddrTCPDport6Set, MatchDaddrUDPDport6Set:
		s, ok := sets[m.Value]
		if !ok {
			return nil, bug(fmt.Errorf("set %q not in table", m.Value))
		}
		v6 := m.Kind == MatchDaddrTCPDport6Set || m.Kind == MatchDaddrUDPDport6Set
		l4 := byte(unix.IPPROTO_TCP)
		if m.Kind == MatchDaddrUDPDport4Set || m.Kind == MatchDaddrUDPDport6Set {
			l4 = unix.IPPROTO_UDP
		}
		// What nft emits for "ip daddr . tcp dport @set": the address in
		// register 1 and the port in the 32-bit register right after it
		// (9 after 4 bytes, 2 after 16), the layout of a concatenated key.
		proto, off, n, portReg := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4), uint32(9)
		if v6 {
			proto, off, n, portReg = unix.NFPROTO_IPV6, 24, 16, 2
		}
		var out []expr.Any
		if fam == nftables.TableFamilyINet {
			out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
		}
		return append(out,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		), nil
	case MatchSkUID:
		uid, err := encodeUID(m.Value)
		if err != nil {
			return nil, bug(fmt.Errorf("uid %q: %w", m.Value, err))
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: uid},
		}, nil
	case MatchSkUIDSet, MatchTCPDportSet:
		s, ok := sets[m.Value]
		if !ok {
			return nil, bug(fmt.Errorf("set %q not in table", m.Value))
		}
		// What nft emits (nft --debug=netlink): the key in register 1.
		if m.Kind == MatchSkUIDSet {
			return []expr.Any{
				&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
			}, nil
		}
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		}, nil
	case MatchTCPSyn:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpSYN | tcpACK}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		}, nil
	case MatchL4TCP:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		}, nil
	case MatchTCPDport:
		port, err := strconv.ParseUint(m.Value, 10, 16)
		if err != nil {
			return nil, bug(fmt.Errorf("port %q: %w", m.Value, err))
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(port))},
		}, nil
	}
	return nil, bug(fmt.Errorf("unknown match kind %q", m.Kind))
}

// TCP header flag bits (byte 13).
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// elemsPerMessage bounds the elements in one NEWSETELEM message. The
// element list is a single netlink attribute, whose length field is 16
// bits: google/nftables does not split it, and a list over 64 KiB wraps
// the length and the kernel silently keeps only a prefix of it. With a
// trailing start element and no end, that prefix is open-ended up to the
// top of the address space: a truncated allow-list fails OPEN. Elements
// take at most 36 bytes (IPv6 end element), so 1024 stay under 37 KiB.
// nft splits its messages the same way; all of them are still in the one
// batch, so the set is replaced atomically.
const elemsPerMessage = 1024

// elemChunks splits elems into message-sized pieces. It cuts only before
// a start element, so an interval's start and end stay in one message.
func elemChunks(elems []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	for len(elems) > 0 {
		n := min(elemsPerMessage, len(elems))
		for n < len(elems) && elems[n].IntervalEnd {
			n-- // never end a chunk between a start and its end
		}
		out = append(out, elems[:n])
		elems = elems[n:]
	}
	return out
}

// ifname pads an interface name to IFNAMSIZ with NULs, as nft does for an
// exact (non-wildcard) name match.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// queue adds l to c as one atomic replacement of the table: add (a no-op
// if it exists), delete, add again with everything in it. The caller
// flushes once; the kernel commits all of it or nothing, so a crash or an
// error never leaves a half-built filter.
func (l lowered) queue(c *nftables.Conn) error {
	c.AddTable(l.table)
	c.DelTable(l.table)
	c.AddTable(l.table)
	for _, s := range l.sets {
		if err := c.AddSet(s.set, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.set.Name, err)
		}
		for _, chunk := range elemChunks(s.elems) {
			if err := c.SetAddElements(s.set, chunk); err != nil {
				return fmt.Errorf("set %s: add elements: %w", s.set.Name, err)
			}
		}
	}
	for _, ch := range l.chains {
		c.AddChain(ch)
	}
	for _, r := range l.rules {
		c.AddRule(r)
	}
	return nil
}
