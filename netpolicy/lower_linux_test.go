package netpolicy

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestLowerIsOneBatch applies a lowered plan to a fake netlink socket
// (no root) and checks that the whole table goes to the kernel as one
// transaction: a single send, framed by batch begin/end, holding the
// replace sequence (add, delete, add) and every set, chain and rule.
func TestLowerIsOneBatch(t *testing.T) {
	p, err := Build(exampleInput, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lower(p.Filter)
	if err != nil {
		t.Fatal(err)
	}
	var sends [][]netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) > 0 { // nil: nltest polling for replies
			sends = append(sends, req)
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.queue(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(sends) != 1 {
		t.Fatalf("%d sends, want 1 batch", len(sends))
	}
	const subsys = unix.NFNL_SUBSYS_NFTABLES << 8
	name := map[netlink.HeaderType]string{
		unix.NFNL_MSG_BATCH_BEGIN:        "begin",
		unix.NFNL_MSG_BATCH_END:          "end",
		subsys | unix.NFT_MSG_NEWTABLE:   "newtable",
		subsys | unix.NFT_MSG_DELTABLE:   "deltable",
		subsys | unix.NFT_MSG_NEWSET:     "newset",
		subsys | unix.NFT_MSG_NEWSETELEM: "newsetelem",
		subsys | unix.NFT_MSG_NEWCHAIN:   "newchain",
		subsys | unix.NFT_MSG_NEWRULE:    "newrule",
	}
	var got []string
	for _, m := range sends[0] {
		n, ok := name[m.Header.Type]
		if !ok {
			n = "other"
		}
		if len(got) > 0 && got[len(got)-1] == n && n == "newrule" {
			continue // collapse the run of rules
		}
		got = append(got, n)
	}
	want := []string{"begin", "newtable", "deltable", "newtable", "newset", "newsetelem", "newset", "newsetelem", "newchain", "newchain", "newrule", "end"}
	if len(p.Allow6) == 0 {
		t.Fatal("example must have IPv6 CIDRs")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch (-want +got):\n%s", diff)
	}
	rules := 0
	for _, m := range sends[0] {
		if m.Header.Type == subsys|unix.NFT_MSG_NEWRULE {
			rules++
		}
	}
	if want := len(p.Filter.Chains[0].Rules) + len(p.Filter.Chains[1].Rules); rules != want {
		t.Errorf("%d rules in batch, want %d", rules, want)
	}
}

func TestLowerRuleExprs(t *testing.T) {
	p, err := Build(exampleInput, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lower(p.Filter)
	if err != nil {
		t.Fatal(err)
	}
	byComment := map[string][]expr.Any{}
	for _, r := range l.rules {
		byComment[string(r.UserData[2:len(r.UserData)-1])] = r.Exprs
	}
	for _, tc := range []struct {
		key  string
		want []expr.Any
	}{
		{key: "allow4", want: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: "allow4", SetID: 1},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{key: "in-listen", want: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: hostAddrOf(t)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, 8787)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{key: "blocked-log", want: []expr.Any{
			&expr.Limit{Type: expr.LimitTypePkts, Rate: logRate, Unit: expr.LimitTimeSecond, Burst: logBurst},
			&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte("opencode-my-project-blocked: ")},
		}},
		{key: "blocked", want: []expr.Any{
			&expr.Counter{},
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED},
		}},
	} {
		got := byComment["ocnix:my-project:"+tc.key]
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("rule %s (-want +got):\n%s", tc.key, diff)
		}
	}
}

func TestIntervalElements(t *testing.T) {
	got := intervalElements([]Interval{iv("10.0.0.0", "10.0.0.255"), iv("255.255.255.0", "255.255.255.255")})
	want := []nftables.SetElement{
		{Key: []byte{10, 0, 0, 0}},
		{Key: []byte{10, 0, 1, 0}, IntervalEnd: true},
		{Key: []byte{255, 255, 255, 0}}, // open-ended: no end element past the top
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestBigSetIsSplitUnder64KiB guards against a fail-open: one netlink
// attribute holds at most 64 KiB, and a longer element list is silently
// truncated by the kernel into an open-ended interval. Every message of a
// 10 000-interval set must stay below that, in one batch.
func TestBigSetIsSplitUnder64KiB(t *testing.T) {
	var cidrs []string
	for i := 0; i < 10000; i++ {
		cidrs = append(cidrs, fmt.Sprintf("2001:db8:%x::/48", 2*i), fmt.Sprintf("10.%d.%d.0/24", i>>7, (i<<1)&0xff))
	}
	p, err := Build(Input{Instance: "big", Enable: true, AllowCIDRs: cidrs}, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lower(p.Filter)
	if err != nil {
		t.Fatal(err)
	}
	var sends [][]netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) > 0 {
			sends = append(sends, req)
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.queue(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(sends) != 1 {
		t.Fatalf("%d sends, want 1 batch", len(sends))
	}
	elemMsgs := 0
	for _, m := range sends[0] {
		if len(m.Data) >= 1<<16 {
			t.Errorf("message type %#x is %d bytes: over the 64 KiB attribute limit", m.Header.Type, len(m.Data))
		}
		if m.Header.Type == unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM {
			elemMsgs++
		}
	}
	total := 0
	for _, s := range l.sets {
		chunks := elemChunks(s.elems)
		for _, ch := range chunks {
			total += len(ch)
			if ch[0].IntervalEnd {
				t.Errorf("set %s: a chunk starts with an end element", s.set.Name)
			}
		}
	}
	if want := 4 * 10000; total != want {
		t.Errorf("%d elements in chunks, want %d", total, want)
	}
	if elemMsgs < 2*10000*2/elemsPerMessage {
		t.Errorf("only %d element messages for 40 000 elements", elemMsgs)
	}
}

func hostAddrOf(t *testing.T) []byte {
	p, err := Build(exampleInput, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	return p.HostAddr.Addr().AsSlice()
}
