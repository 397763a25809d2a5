package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// landlockSet is what a Landlock ruleset can handle (deny unless a rule
// allows). One shape serves three uses: what an ABI can handle
// (abiInfos), what ocnix asks for (landlockPolicy.Handled) and what one
// protection needs (landlockProtections), so that "is this protection
// in force on this kernel" is a subset test, not a version comparison.
type landlockSet struct {
	FS     FSRights
	Net    NetRights
	Scoped Scopes
	// Log is LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON: audit denials
	// after execve too, which is all that runs after Run.
	Log bool
}

func (s landlockSet) intersect(o landlockSet) landlockSet {
	return landlockSet{FS: s.FS & o.FS, Net: s.Net & o.Net, Scoped: s.Scoped & o.Scoped, Log: s.Log && o.Log}
}

func (s landlockSet) subsetOf(o landlockSet) bool {
	return s.FS&^o.FS == 0 && s.Net&^o.Net == 0 && s.Scoped&^o.Scoped == 0 && (!s.Log || o.Log)
}

const (
	tcpRights   NetRights = ll.AccessNetBindTCP | ll.AccessNetConnectTCP
	allScopes   Scopes    = ll.ScopeAbstractUnixSocket | ll.ScopeSignal
	abi1FS      FSRights  = 1<<13 - 1
	abi2FS                = abi1FS | ll.AccessFSRefer
	abi3FS                = abi2FS | ll.AccessFSTruncate
	abi5FS                = abi3FS | ll.AccessFSIoctlDev
	abi9FS                = abi5FS | ll.AccessFSResolveUnix
	allFSRights           = abi9FS
)

// abiInfos[n] is what Landlock ABI n can handle (the kernel's
// Documentation/userspace-api/landlock.rst). It is the only place that
// knows which ABI brought what; everything else asks downgrade.
var abiInfos = []landlockSet{
	0: {},
	1: {FS: abi1FS},
	2: {FS: abi2FS},
	3: {FS: abi3FS},
	4: {FS: abi3FS, Net: tcpRights},
	5: {FS: abi5FS, Net: tcpRights},
	6: {FS: abi5FS, Net: tcpRights, Scoped: allScopes},
	7: {FS: abi5FS, Net: tcpRights, Scoped: allScopes, Log: true},
	// ABI 8 can restrict every thread at once; ocnix restricts the one
	// thread that execs, so it changes nothing here.
	8: {FS: abi5FS, Net: tcpRights, Scoped: allScopes, Log: true},
	9: {FS: abi9FS, Net: tcpRights, Scoped: allScopes, Log: true},
}

// abiInfo is what ABI abi can handle. A newer kernel than ocnix knows
// gets what the newest known ABI handles: handling a right the policy
// has no rules for would deny it outright, and ocnix cannot have
// meant that.
func abiInfo(abi int) landlockSet {
	abi = max(0, min(abi, len(abiInfos)-1))
	return abiInfos[abi]
}

// sinceABI is the first ABI that handles all of need, for texts that
// tell the operator which kernel to get.
func sinceABI(need landlockSet) int {
	for v, info := range abiInfos {
		if need.subsetOf(info) {
			return v
		}
	}
	return len(abiInfos)
}

// fsPromise is what the filesystem allow-list needs handled: every right
// a read-write path gets, except resolve_unix, whose absence the
// supervisor makes up for. Without refer (ABI 2) nothing can be renamed
// between directories; without truncate (ABI 3) files outside the
// read-write paths can be emptied. MinLandlockABI is the first ABI that
// handles it all (a test holds the two together).
const fsPromise = rightsRW &^ ll.AccessFSResolveUnix

// resolveUnixSince is the first ABI where Landlock itself gates unix
// socket connects and datagram sends.
var resolveUnixSince = sinceABI(landlockSet{FS: ll.AccessFSResolveUnix})

// keepsFSPromise reports whether l keeps the filesystem allow-list; Run
// refuses a plan that does not.
func (l LandlockPlan) keepsFSPromise() bool {
	return l.HandledFS&fsPromise == fsPromise
}

// gatesUnix reports whether Landlock checks connects to and datagram
// sends on pathname unix sockets itself; otherwise the seccomp
// supervisor must.
func (l LandlockPlan) gatesUnix() bool {
	return l.HandledFS&ll.AccessFSResolveUnix != 0
}

// handled is the set l handles, the inverse of downgrade's cut.
func (l LandlockPlan) handled() landlockSet {
	return landlockSet{FS: l.HandledFS, Net: l.HandledNet, Scoped: l.Scoped, Log: l.LogSubprocesses}
}

// fitsABI reports whether a kernel with Landlock ABI abi can enforce l
// as it is: Run refuses a plan built for a newer kernel.
func (l LandlockPlan) fitsABI(abi int) bool {
	return l.handled().subsetOf(abiInfo(abi))
}

// landlockPolicy is the Landlock part of the sandbox as ocnix wants it
// on the newest ABI it knows: everything handled, each rule with all the
// rights it should have. downgrade cuts it to one kernel.
type landlockPolicy struct {
	Handled landlockSet
	Paths   []PathRule
	Ports   []PortRule
}

// landlockProtection is one promise that rests on Landlock alone: in
// force when the downgraded ruleset handles all of needs.
type landlockProtection struct {
	name     string
	needs    landlockSet
	enforced func(l LandlockPlan, since int) string
	lost     func(l LandlockPlan, since int) string
}

var landlockProtections = []landlockProtection{
	{
		name:  "filesystem allow-list",
		needs: landlockSet{FS: fsPromise},
		enforced: func(l LandlockPlan, _ int) string {
			return fmt.Sprintf("Landlock ABI %d: read-write, read-only and exec paths only; /tmp is not granted", l.ABI)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("Landlock ABI %d is below the minimum %d: it cannot restrict %v, so Run refuses to start", l.ABI, since, fsPromise&^l.HandledFS)
		},
	},
	{
		name:  "truncate outside read-write paths",
		needs: landlockSet{FS: ll.AccessFSTruncate},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("Landlock handles truncate (ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("not restricted: Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		name:  "TCP bind",
		needs: landlockSet{Net: ll.AccessNetBindTCP},
		enforced: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("only ports %s (Landlock ABI ≥ %d; Multipath TCP, which Landlock does not cover, is denied by seccomp)", boundPorts(l), since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("any port can be bound: Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		name:  "device ioctl",
		needs: landlockSet{FS: ll.AccessFSIoctlDev},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("ioctl on device files only on terminals (Landlock ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("ioctl on opened device files is not restricted: Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		name:  "abstract unix sockets",
		needs: landlockSet{Scoped: ll.ScopeAbstractUnixSocket},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("cannot connect to abstract sockets outside the sandbox (Landlock scope, ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("abstract unix sockets of the whole network namespace are reachable: Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		name:  "signals",
		needs: landlockSet{Scoped: ll.ScopeSignal},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("cannot signal processes outside the sandbox (Landlock scope, ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("can signal any process of the same user: Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		// Below resolve_unix the unix-socket allow-list moves to the
		// supervisor (see unixProtection), which cannot see datagram
		// sends: seccomp denies the sockets instead (socketPolicy).
		name:  "unix datagram sockets",
		needs: landlockSet{FS: ll.AccessFSResolveUnix},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("allowed; sends are checked by Landlock resolve_unix (ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("socket() and socketpair() of AF_UNIX types other than SOCK_STREAM and SOCK_SEQPACKET are denied (EACCES): SOCK_DGRAM, and SOCK_RAW, which the kernel makes a datagram socket, send where the gate cannot see on Landlock ABI %d < %d", l.ABI, since)
		},
	},
	{
		name:  "audit of denials after exec",
		needs: landlockSet{Log: true},
		enforced: func(_ LandlockPlan, since int) string {
			return fmt.Sprintf("Landlock denials of the server and its children are audited (ABI ≥ %d)", since)
		},
		lost: func(l LandlockPlan, since int) string {
			return fmt.Sprintf("Landlock stops auditing at execve: the server's denials are not logged (ABI %d < %d)", l.ABI, since)
		},
	},
}

// boundPorts names the ports l lets the instance bind.
func boundPorts(l LandlockPlan) string {
	var out []string
	for _, r := range l.Ports {
		if r.Rights&ll.AccessNetBindTCP == 0 {
			continue
		}
		s := strconv.Itoa(int(r.Port))
		if r.Port == 0 {
			s += " (ephemeral)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// downgrade is the one place where the kernel's Landlock ABI changes the
// sandbox. It cuts pol to what abi can handle, drops rules left with no
// right (the kernel answers EINVAL to those), and says which
// protections stay in force and which are lost. Run applies the plan it
// returns and explain prints the protections, so the two cannot
// disagree. Everything else that depends on the ABI (the unix-socket
// gate, seccomp's datagram rules, Run's refusal) asks the plan, not the
// ABI number. It is pure: a table test covers every ABI on any machine.
func downgrade(pol landlockPolicy, abi int) (LandlockPlan, []Protection) {
	h := pol.Handled.intersect(abiInfo(abi))
	l := LandlockPlan{
		ABI: abi, MinABI: MinLandlockABI,
		HandledFS: h.FS, HandledNet: h.Net, Scoped: h.Scoped, LogSubprocesses: h.Log,
		Paths: []PathRule{}, Ports: []PortRule{},
	}
	for _, r := range pol.Paths {
		if r.Rights &= h.FS; r.Rights != 0 {
			l.Paths = append(l.Paths, r)
		}
	}
	for _, r := range pol.Ports {
		if r.Rights &= h.Net; r.Rights != 0 {
			l.Ports = append(l.Ports, r)
		}
	}
	prots := make([]Protection, 0, len(landlockProtections))
	for _, p := range landlockProtections {
		since := sinceABI(p.needs)
		if p.needs.subsetOf(h) {
			prots = append(prots, Protection{Name: p.name, Status: StatusEnforced, Detail: p.enforced(l, since)})
		} else {
			prots = append(prots, Protection{Name: p.name, Status: StatusDegraded, Detail: p.lost(l, since)})
		}
	}
	return l, prots
}
