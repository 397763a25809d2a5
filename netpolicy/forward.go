package netpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// The host's IPv4 forwarding, shared by every instance on the host. doc.go
// ("Forwarding on the host") explains the model.
const (
	// ForwardTableName is the host table (family inet) that holds the
	// forward chain. Instance host tables are "ip ocnix-<name>" with a
	// non-empty name, so none can be this one (which is in family inet, too).
	ForwardTableName = "ocnix"
	// ForwardStateDir holds the record of the forwarding sysctls ocnix
	// switched on, and the lock that serialises changing them. It is on
	// tmpfs like the sysctls themselves: both are gone after a reboot.
	ForwardStateDir = "/run/ocnix"
	// forwardOwner names the shared rules in their comments
	// ("ocnix:host-forward:<key>").
	forwardOwner = "host-forward"
)

// ForwardStateFile lists the interfaces whose
// net.ipv4.conf.<if>.forwarding ocnix turned from 0 to 1.
const ForwardStateFile = ForwardStateDir + "/forwarding.json"

// ForwardTable is the host's forward filter for the instances: it accepts
// what an instance sends (its own netns filter has already decided), the
// replies to it, and drops everything else that arrives on one of enabled,
// the interfaces whose forwarding ocnix switched on. Traffic between other
// interfaces is left to the host (policy accept), so a host that forwards
// on purpose keeps doing so.
func ForwardTable(enabled []string) Table {
	r := func(key string, v Verdict, m ...Match) Rule {
		return Rule{Key: key, Matches: m, Counter: true, Verdict: v, Comment: ruleComment(forwardOwner, key)}
	}
	rules := []Rule{
		r("from-instance", VerdictAccept, Match{Kind: MatchIIFPrefix, Value: vethPrefix}),
		r("reply-to-instance", VerdictAccept, Match{Kind: MatchOIFPrefix, Value: vethPrefix}, Match{Kind: MatchCtState}),
		// New flows into an instance: its netns input chain would drop them
		// too; dropping here keeps them off the veth.
		r("new-to-instance", VerdictDrop, Match{Kind: MatchOIFPrefix, Value: vethPrefix}),
	}
	for _, dev := range enabled {
		rules = append(rules, r("not-ours:"+dev, VerdictDrop, Match{Kind: MatchIIFName, Value: dev}))
	}
	return Table{
		Family: "inet",
		Name:   ForwardTableName,
		Chains: []Chain{{Name: "forward", Type: "filter", Hook: "forward", Priority: 0, Policy: "accept", Rules: rules}},
	}
}

// forwardState is the content of ForwardStateFile.
type forwardState struct {
	// Enabled are the interfaces whose IPv4 forwarding ocnix switched from
	// 0 to 1, sorted. Only these get a drop rule, and only these are
	// switched back when the last instance goes.
	Enabled []string `json:"enabled"`
}

// ForwardingEnabled returns the interfaces whose IPv4 forwarding setup
// turned on and that the shared forward table guards (for status). It
// needs no privileges.
func ForwardingEnabled() ([]string, error) {
	st, err := readForwardState()
	return st.Enabled, err
}

func readForwardState() (forwardState, error) {
	var st forwardState
	b, err := os.ReadFile(ForwardStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", ForwardStateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s is corrupt (%v): compare it with `sysctl -a | grep 'ipv4.conf.*forwarding'`, fix or remove it, then run setup again", ForwardStateFile, err)
	}
	return st, nil
}
