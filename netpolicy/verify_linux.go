package netpolicy

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// VerifyFilter reads the nftables ruleset inside the instance netns back and
// checks that it is exactly the plan's filter: one table (ours), its chains
// with their hooks, priorities and policies, its sets with exactly the
// planned elements, and each chain's rules in order with the planned
// expressions. Anything else (a flushed ruleset, an added accept rule, an
// extra table, a widened set) is an error naming the first difference.
//
// It changes nothing. It needs CAP_NET_ADMIN (nftables refuses dumps
// otherwise), so the systemd unit runs it as root before the server starts
// (`opencode-launcher preflight`). A plan with isolation off verifies
// trivially.
func VerifyFilter(p Plan) error {
	if !p.Enable {
		return nil
	}
	ok, err := isNetnsMount(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("netpolicy: verify filter of %s: %w", p.Netns, err)
	}
	if !ok {
		return fmt.Errorf("netpolicy: verify filter of %s: %s is not a mounted network namespace; run setup", p.Netns, p.NetnsPath)
	}
	fd, err := unix.Open(p.NetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netpolicy: verify filter of %s: open %s: %w", p.Netns, p.NetnsPath, err)
	}
	defer unix.Close(fd)
	if err := verifyTable(p.Filter, fd); err != nil {
		return fmt.Errorf("netpolicy: the egress filter in %s is not the planned one: %w; run setup again", p.Netns, err)
	}
	return nil
}

func verifyTable(t Table, nsfd int) error {
	want, err := lower(t)
	if err != nil {
		return err
	}
	c, err := connFor(t, nsfd)
	if err != nil {
		return err
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	found := false
	for _, tb := range tables {
		if tb.Name == want.table.Name && tb.Family == want.table.Family {
			found = true
			continue
		}
		return fmt.Errorf("unexpected table %s (family %d) in the namespace", tb.Name, tb.Family)
	}
	if !found {
		return fmt.Errorf("table %s %s is missing", t.Family, t.Name)
	}

	chains, err := c.ListChainsOfTableFamily(want.table.Family)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	var got []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == want.table.Name {
			got = append(got, ch)
		}
	}
	if len(got) != len(want.chains) {
		return fmt.Errorf("table %s has %d chains, the plan %d", t.Name, len(got), len(want.chains))
	}
	for _, w := range want.chains {
		i := slices.IndexFunc(got, func(ch *nftables.Chain) bool { return ch.Name == w.Name })
		if i < 0 {
			return fmt.Errorf("chain %s is missing", w.Name)
		}
		g := got[i]
		switch {
		case g.Hooknum == nil || *g.Hooknum != *w.Hooknum:
			return fmt.Errorf("chain %s: hook differs", w.Name)
		case g.Priority == nil || *g.Priority != *w.Priority:
			return fmt.Errorf("chain %s: priority differs", w.Name)
		case g.Type != w.Type:
			return fmt.Errorf("chain %s: type %s, the plan %s", w.Name, g.Type, w.Type)
		case g.Policy == nil || *g.Policy != *w.Policy:
			return fmt.Errorf("chain %s: policy differs from the plan's", w.Name)
		}
	}

	sets, err := c.GetSets(want.table)
	if err != nil {
		return fmt.Errorf("list sets: %w", err)
	}
	if len(sets) != len(want.sets) {
		return fmt.Errorf("table %s has %d sets, the plan %d", t.Name, len(sets), len(want.sets))
	}
	for _, ws := range want.sets {
		i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == ws.set.Name })
		if i < 0 {
			return fmt.Errorf("set %s is missing", ws.set.Name)
		}
		if g := sets[i]; g.KeyType.Name != ws.set.KeyType.Name || g.Interval != ws.set.Interval {
			return fmt.Errorf("set %s: type or flags differ from the plan's", ws.set.Name)
		}
	}
	if err := want.verifySets(c); err != nil {
		return err
	}

	fam := byte(want.table.Family)
	for _, ch := range want.chains {
		rules, err := c.GetRules(want.table, ch)
		if err != nil {
			return fmt.Errorf("chain %s: list rules: %w", ch.Name, err)
		}
		var wr []*nftables.Rule
		for _, r := range want.rules {
			if r.Chain.Name == ch.Name {
				wr = append(wr, r)
			}
		}
		if len(rules) != len(wr) {
			return fmt.Errorf("chain %s has %d rules, the plan %d", ch.Name, len(rules), len(wr))
		}
		for i, r := range rules {
			if err := sameRule(fam, wr[i], r); err != nil {
				comment, _ := userdata.GetString(wr[i].UserData, userdata.TypeComment)
				return fmt.Errorf("chain %s: rule %d (%s): %w", ch.Name, i+1, comment, err)
			}
		}
	}
	return nil
}

// sameRule compares the wire encoding of each expression, which is what
// the kernel enforces; counter values and the batch-local set IDs are
// zeroed first, because they legitimately differ between what was sent and
// what is read back.
func sameRule(fam byte, want, got *nftables.Rule) error {
	wc, _ := userdata.GetString(want.UserData, userdata.TypeComment)
	gc, _ := userdata.GetString(got.UserData, userdata.TypeComment)
	if wc != gc {
		return fmt.Errorf("comment %q, the plan %q", gc, wc)
	}
	if len(got.Exprs) != len(want.Exprs) {
		return fmt.Errorf("%d expressions, the plan %d", len(got.Exprs), len(want.Exprs))
	}
	for i := range want.Exprs {
		w, err := expr.Marshal(fam, normalize(want.Exprs[i]))
		if err != nil {
			return fmt.Errorf("encode planned expression %d: %w", i+1, err)
		}
		g, err := expr.Marshal(fam, normalize(got.Exprs[i]))
		if err != nil {
			return fmt.Errorf("encode expression %d: %w", i+1, err)
		}
		if !bytes.Equal(w, g) {
			return fmt.Errorf("expression %d (%T) differs from the plan's", i+1, got.Exprs[i])
		}
	}
	return nil
}

func normalize(e expr.Any) expr.Any {
	switch v := e.(type) {
	case *expr.Counter:
		return &expr.Counter{}
	case *expr.Log:
		// The kernel reports default level and flags the plan leaves unset;
		// what is logged is not part of what is allowed.
		return &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: v.Data}
	case *expr.Lookup:
		c := *v
		c.SetID = 0
		return &c
	}
	return e
}
