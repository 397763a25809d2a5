package netpolicy

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Counters reads the counters of the instance's rules, keyed by rule key
// ("allow4", "blocked", "in-drop", …; the host masquerade rule is
// "host/masquerade"). Rules are found by their UserData comment, not by
// position. It needs CAP_NET_ADMIN (nftables refuses dumps otherwise).
// Counters restart at zero whenever Ensure replaces the tables.
func Counters(p Plan) (map[string]Counter, error) {
	if !p.Enable {
		return map[string]Counter{}, nil
	}
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: counters %s: open %s: %w", p.Netns, p.NetnsPath, err)
	}
	defer ns.Close()
	out := map[string]Counter{}
	if err := readCounters(p.Filter, int(ns), "", out); err != nil {
		return nil, fmt.Errorf("netpolicy: counters %s: in netns: %w", p.Netns, err)
	}
	// The host table may be gone (host `nft flush ruleset` until the next
	// setup); the filter counters are still worth showing then.
	if err := readCounters(p.Host, -1, "host/", out); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("netpolicy: counters %s: host: %w", p.Netns, err)
	}
	return out, nil
}

func readCounters(t Table, nsfd int, keyPrefix string, out map[string]Counter) error {
	fam, err := tableFamily(t.Family)
	if err != nil {
		return err
	}
	c, err := connFor(t, nsfd)
	if err != nil {
		return err
	}
	nt := &nftables.Table{Name: t.Name, Family: fam}
	byComment := map[string]string{}
	for _, ch := range t.Chains {
		for _, r := range ch.Rules {
			byComment[r.Comment] = r.Key
		}
	}
	for _, ch := range t.Chains {
		rules, err := c.GetRules(nt, &nftables.Chain{Name: ch.Name, Table: nt})
		if err != nil {
			return fmt.Errorf("table %s %s: chain %s: list rules: %w", t.Family, t.Name, ch.Name, err)
		}
		for _, r := range rules {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			key, ok := byComment[comment]
			if !ok {
				continue
			}
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					out[keyPrefix+key] = Counter{Packets: ctr.Packets, Bytes: ctr.Bytes}
				}
			}
		}
	}
	return nil
}

// checkFilter confirms that the instance's filter table is loaded in the
// netns nsfd, with the plan's chains and their drop policies.
func checkFilter(p Plan, nsfd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(nsfd))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, want := range p.Filter.Chains {
		ok := false
		for _, ch := range chains {
			if ch.Table.Name == p.Filter.Name && ch.Name == want.Name && ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("filter table inet %s: chain %s with policy drop is missing", p.Filter.Name, want.Name)
		}
	}
	return nil
}
