package netpolicy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
)

// The peer guard: no instance reaches another instance's server, whatever
// their isolation settings. doc.go ("No reach into other instances")
// explains the model; this file builds it as data.

// Listener is one instance's entry in the peer guard: the TCP port its
// server is published on (listen.port) and the uid every process of the
// instance runs as. The uid is a host fact (the account lookup), so Build
// gets it through Input.UID.
type Listener struct {
	Instance string `json:"instance"`
	Port     uint16 `json:"port"`
	UID      uint32 `json:"uid"`
}

func (l Listener) String() string {
	return fmt.Sprintf("%d . %d (instance %q: port . uid)", l.Port, l.UID, l.Instance)
}

// Names in the shared table (ForwardTableName) that belong to the peer
// guard.
const (
	// peerUIDsSet holds the uids of all registered instances, peerPortsSet
	// their listen ports, and peerOwnersSet the pairs port . uid: which
	// uid owns which port.
	peerUIDsSet   = "instance-uids"
	peerPortsSet  = "instance-ports"
	peerOwnersSet = "instance-owners"
	// peerOwner names the shared peer-guard rules in their comments
	// ("ocnix:peer-guard:<key>"); the per-instance log rules carry the
	// instance's name instead.
	peerOwner = "peer-guard"
)

// sortListeners returns ls sorted by instance with one entry per instance
// (the last one wins), so that the same registrations always give the same
// table.
func sortListeners(ls []Listener) []Listener {
	byName := map[string]Listener{}
	for _, l := range ls {
		byName[l.Instance] = l
	}
	out := make([]Listener, 0, len(byName))
	for _, l := range byName {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listener) int { return cmp.Compare(a.Instance, b.Instance) })
	return out
}

// SharedTable is the host table every instance shares: the forward guard
// (ForwardTable, for the interfaces in enabled) and the peer guard for the
// registered listeners ls.
//
// The peer guard rejects, with a TCP reset, a connection that a process of
// a registered instance (socket owner uid in @instance-uids) opens over
// the loopback device (every locally delivered packet leaves through lo,
// whatever the local address: 127.x, ::1 or any of the host's own
// addresses) to a registered instance port, and one that arrives from an instance veth to
// any registered instance port. That includes the instance's own port:
// opencode hands its whole environment, OPENCODE_SERVER_PASSWORD included,
// to every command the agent runs (and the server's /proc/<pid>/environ is
// readable by the same uid), so an agent that could reach its own server
// could answer its own permission prompts and rewrite its session. The
// owners set records who registered what (explain, VerifyPeerGuard); no
// rule exempts an owner. Only a connection's first packet (SYN
// without ACK) is matched: the replies of a server carry the client's
// port as destination, which may by chance be another instance's port
// number. Everything else passes (policy accept): host users, a reverse
// proxy, and the instances' connections to anything that is not an
// instance's port.
func SharedTable(enabled []string, ls []Listener) Table {
	t := ForwardTable(enabled)
	ls = sortListeners(ls)
	uids, ports, owners := []SetValue{}, []SetValue{}, []SetValue{}
	seenUID, seenPort := map[uint32]bool{}, map[uint16]bool{}
	for _, l := range ls {
		if !seenUID[l.UID] {
			seenUID[l.UID] = true
			uids = append(uids, SetValue{Key: strconv.FormatUint(uint64(l.UID), 10)})
		}
		if !seenPort[l.Port] {
			seenPort[l.Port] = true
			ports = append(ports, SetValue{Key: strconv.FormatUint(uint64(l.Port), 10)})
		}
		// Two instances with the same user and port (only one can be
		// listening) share an element; the comment names the first.
		if k := fmt.Sprintf("%d . %d", l.Port, l.UID); !slices.ContainsFunc(owners, func(v SetValue) bool { return v.Key == k }) {
			owners = append(owners, SetValue{Key: k, Comment: ruleComment(l.Instance, "listener")})
		}
	}
	sortValues := func(vs []SetValue) {
		slices.SortFunc(vs, func(a, b SetValue) int { return cmp.Compare(a.Key, b.Key) })
	}
	sortValues(uids)
	sortValues(ports)
	sortValues(owners)
	t.Sets = []Set{
		{Name: peerUIDsSet, Type: "uid", Hash: true, Values: uids},
		{Name: peerPortsSet, Type: "inet_service", Hash: true, Values: ports},
		{Name: peerOwnersSet, Type: "inet_service . uid", Hash: true, Values: owners},
	}

	lo := Match{Kind: MatchOIFName, Value: "lo"}
	fromVeth := Match{Kind: MatchIIFPrefix, Value: vethPrefix}
	toVeth := Match{Kind: MatchOIFPrefix, Value: vethPrefix}
	syn := Match{Kind: MatchTCPSyn}
	toPort := Match{Kind: MatchTCPDportSet, Value: peerPortsSet}
	logRule := func(instance, key string, m ...Match) Rule {
		return Rule{
			Key: key + ":" + instance, Matches: m,
			Limit:   &Limit{Rate: logRate, Burst: logBurst},
			Log:     &Log{Prefix: LogPrefix(instance)},
			Comment: ruleComment(instance, key),
		}
	}
	var output, input []Rule
	for _, l := range ls {
		uid := Match{Kind: MatchSkUID, Value: strconv.FormatUint(uint64(l.UID), 10)}
		output = append(output,
			logRule(l.Instance, "peer-log", lo, uid, syn, toPort),
			logRule(l.Instance, "peer-veth-log", toVeth, uid, syn, toPort))
		input = append(input, logRule(l.Instance, "peer-in-log", Match{Kind: MatchIIFName, Value: HostVethName(l.Instance)}, syn, toPort))
	}
	output = append(output, Rule{
		Key: "peer-block", Counter: true, Verdict: VerdictRejectRST, Comment: ruleComment(peerOwner, "peer-block"),
		Matches: []Match{lo, {Kind: MatchSkUIDSet, Value: peerUIDsSet}, syn, toPort},
	})
	// An instance in the host's network namespace dialling an isolated
	// instance's netns address leaves through that instance's veth, not
	// lo, and arrives from the host's veth address, which the netns admits
	// to its listen port (for the proxy and readiness checks).
	output = append(output, Rule{
		Key: "peer-veth-block", Counter: true, Verdict: VerdictRejectRST, Comment: ruleComment(peerOwner, "peer-veth-block"),
		Matches: []Match{toVeth, {Kind: MatchSkUIDSet, Value: peerUIDsSet}, syn, toPort},
	})
	input = append(input, Rule{
		Key: "peer-in-block", Counter: true, Verdict: VerdictRejectRST, Comment: ruleComment(peerOwner, "peer-in-block"),
		Matches: []Match{fromVeth, syn, toPort},
	})
	t.Chains = append(t.Chains,
		Chain{Name: "output", Type: "filter", Hook: "output", Priority: 0, Policy: "accept", Rules: output},
		Chain{Name: "input", Type: "filter", Hook: "input", Priority: 0, Policy: "accept", Rules: input},
	)
	return t
}

// sharedUIDWarnings names every other registered instance that runs as
// the same uid as instance: the peer guard decides by the socket owner's
// uid, so it cannot keep such instances from each other's servers.
func sharedUIDWarnings(ls []Listener, instance string) []string {
	var self *Listener
	for i := range ls {
		if ls[i].Instance == instance {
			self = &ls[i]
		}
	}
	if self == nil {
		return nil
	}
	var out []string
	for _, l := range ls {
		if l.Instance != instance && l.UID == self.UID {
			out = append(out, fmt.Sprintf("instance %q runs as the same uid %d as instance %q: the peer guard tells instances apart by uid, so these two reach each other's servers (ports %d and %d); give each instance a user of its own", instance, l.UID, l.Instance, self.Port, l.Port))
		}
	}
	return out
}
