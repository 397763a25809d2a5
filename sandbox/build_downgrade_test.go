package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Every protection downgrade reports, in its order.
var allLandlockProtections = []string{
	"filesystem allow-list", "truncate outside read-write paths", "TCP bind", "device ioctl",
	"abstract unix sockets", "signals", "unix datagram sockets", "audit of denials after exec",
}

func testPolicy() landlockPolicy {
	return landlockPolicyFor(normalize(testInput()), testFS(), LayoutFHS)
}

// TestDowngradePerABI is the downgrade written out as plain data for every
// ABI: what is handled and which protections are lost. ABI 10 is newer than
// ocnix knows and gets ABI 9's ruleset.
func TestDowngradePerABI(t *testing.T) {
	scopes := Scopes(ll.ScopeAbstractUnixSocket | ll.ScopeSignal)
	bind := NetRights(ll.AccessNetBindTCP)
	tests := []struct {
		abi    int
		fs     FSRights
		net    NetRights
		scoped Scopes
		log    bool
		lost   []string
	}{
		{abi: -1, lost: allLandlockProtections},
		{abi: 0, lost: allLandlockProtections},
		{abi: 1, fs: 1<<13 - 1, lost: allLandlockProtections},
		{abi: 2, fs: 1<<14 - 1, lost: allLandlockProtections},
		{abi: 3, fs: 1<<15 - 1, lost: allLandlockProtections[2:]},
		{abi: 4, fs: 1<<15 - 1, net: bind, lost: allLandlockProtections[3:]},
		{abi: 5, fs: 1<<16 - 1, net: bind, lost: allLandlockProtections[4:]},
		{abi: 6, fs: 1<<16 - 1, net: bind, scoped: scopes, lost: allLandlockProtections[6:]},
		{abi: 7, fs: 1<<16 - 1, net: bind, scoped: scopes, log: true, lost: []string{"unix datagram sockets"}},
		{abi: 8, fs: 1<<16 - 1, net: bind, scoped: scopes, log: true, lost: []string{"unix datagram sockets"}},
		{abi: 9, fs: 1<<17 - 1, net: bind, scoped: scopes, log: true},
		{abi: 10, fs: 1<<17 - 1, net: bind, scoped: scopes, log: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("ABI%d", tc.abi), func(t *testing.T) {
			l, prots := downgrade(testPolicy(), tc.abi)
			got := struct {
				FS     FSRights
				Net    NetRights
				Scoped Scopes
				Log    bool
			}{l.HandledFS, l.HandledNet, l.Scoped, l.LogSubprocesses}
			want := struct {
				FS     FSRights
				Net    NetRights
				Scoped Scopes
				Log    bool
			}{tc.fs, tc.net, tc.scoped, tc.log}
			if got != want {
				t.Errorf("handled = %+v, want %+v", got, want)
			}
			if l.ABI != tc.abi || l.MinABI != MinLandlockABI {
				t.Errorf("ABI %d, MinABI %d: want the kernel's %d and %d", l.ABI, l.MinABI, tc.abi, MinLandlockABI)
			}
			var names, lost []string
			for _, p := range prots {
				names = append(names, p.Name)
				switch p.Status {
				case StatusDegraded:
					lost = append(lost, p.Name)
				case StatusEnforced:
				default:
					t.Errorf("protection %v: status is neither enforced nor lost", p)
				}
			}
			if !slices.Equal(names, allLandlockProtections) {
				t.Errorf("protections %v, want every one of %v", names, allLandlockProtections)
			}
			if diff := cmp.Diff(tc.lost, lost); diff != "" {
				t.Errorf("lost protections (-want +got):\n%s", diff)
			}
			if wantPorts := tc.net != 0; (len(l.Ports) == 3) != wantPorts || (!wantPorts && len(l.Ports) != 0) {
				t.Errorf("port rules %v with handled net %v", l.Ports, l.HandledNet)
			}
			if l.keepsFSPromise() != (tc.abi >= MinLandlockABI) {
				t.Errorf("keepsFSPromise = %v at ABI %d (minimum %d)", l.keepsFSPromise(), tc.abi, MinLandlockABI)
			}
		})
	}
}

// TestDowngradeRulesOnlyUseHandledRights: a rule with a right the ruleset
// does not handle, or with none, is EINVAL; a file rule with a directory
// right too.
func TestDowngradeRulesOnlyUseHandledRights(t *testing.T) {
	for abi := 0; abi <= 10; abi++ {
		l, _ := downgrade(testPolicy(), abi)
		for _, r := range l.Paths {
			if r.Rights == 0 || r.Rights&^l.HandledFS != 0 || (r.File && r.Rights&^rightsFile != 0) {
				t.Errorf("ABI %d: rule %v grants what %v cannot carry", abi, r, l.HandledFS)
			}
		}
		for _, r := range l.Ports {
			if r.Rights == 0 || r.Rights&^l.HandledNet != 0 {
				t.Errorf("ABI %d: rule %v grants what %v cannot carry", abi, r, l.HandledNet)
			}
		}
		if !l.fitsABI(abi) {
			t.Errorf("ABI %d: the downgraded plan does not fit its own ABI", abi)
		}
	}
}

// TestDowngradeLowerABINeverGrantsMore: going down an ABI only ever takes
// away rights from rules and protections from the list.
func TestDowngradeLowerABINeverGrantsMore(t *testing.T) {
	for lo := 0; lo <= 10; lo++ {
		for hi := lo + 1; hi <= 10; hi++ {
			l, lp := downgrade(testPolicy(), lo)
			h, hp := downgrade(testPolicy(), hi)
			if !l.handled().subsetOf(h.handled()) {
				t.Errorf("ABI %d handles %+v, not within ABI %d's %+v", lo, l.handled(), hi, h.handled())
			}
			for _, r := range l.Paths {
				i := slices.IndexFunc(h.Paths, func(x PathRule) bool { return x.Path == r.Path && x.Kind == r.Kind })
				if i < 0 || r.Rights&^h.Paths[i].Rights != 0 {
					t.Errorf("ABI %d grants %v, more than ABI %d", lo, r, hi)
				}
			}
			for _, r := range l.Ports {
				i := slices.IndexFunc(h.Ports, func(x PortRule) bool { return x.Port == r.Port })
				if i < 0 || r.Rights&^h.Ports[i].Rights != 0 {
					t.Errorf("ABI %d grants %v, more than ABI %d", lo, r, hi)
				}
			}
			for i := range lp {
				if lp[i].Status == StatusEnforced && hp[i].Status != StatusEnforced {
					t.Errorf("protection %q is enforced on ABI %d but not on ABI %d", lp[i].Name, lo, hi)
				}
			}
			// Run refuses a plan built for a newer kernel unless the
			// older one handles the same (ABI 8 and 7, 10 and 9).
			if h.fitsABI(lo) != (h.handled() == l.handled()) {
				t.Errorf("ABI %d's plan (handling %+v) fits ABI %d: %v", hi, h.handled(), lo, h.fitsABI(lo))
			}
		}
	}
}

// TestABITableMatchesGoLandlock: the table downgrade reads agrees with the
// one go-landlock checks the ruleset against when Run applies it.
func TestABITableMatchesGoLandlock(t *testing.T) {
	configs := []landlock.Config{1: landlock.V1, 2: landlock.V2, 3: landlock.V3, 4: landlock.V4,
		5: landlock.V5, 6: landlock.V6, 7: landlock.V7, 8: landlock.V8, 9: landlock.V9}
	for v := 1; v < len(configs); v++ {
		c, info := configs[v], abiInfo(v)
		if FSRights(c.HandledAccessFS) != info.FS || NetRights(c.HandledAccessNet) != info.Net || Scopes(c.Scoped) != info.Scoped {
			t.Errorf("ABI %d: go-landlock handles %v, ocnix's table says %+v", v, c, info)
		}
	}
	if len(abiInfos) != len(configs) {
		t.Errorf("the table knows ABIs 0-%d, the test 0-%d", len(abiInfos)-1, len(configs)-1)
	}
	if got := sinceABI(landlockSet{FS: fsPromise}); got != MinLandlockABI {
		t.Errorf("the filesystem allow-list needs ABI %d, MinLandlockABI says %d", got, MinLandlockABI)
	}
	if resolveUnixSince != 9 {
		t.Errorf("resolve_unix since ABI %d, want 9", resolveUnixSince)
	}
}

// TestPlanFollowsDowngrade: for every ABI the plan Build returns is what
// downgrade says, and the parts that depend on the kernel (gate, seccomp,
// Run's refusal, explain's text) follow the ruleset, never contradict it.
func TestPlanFollowsDowngrade(t *testing.T) {
	for abi := 0; abi <= 10; abi++ {
		t.Run(fmt.Sprintf("ABI%d", abi), func(t *testing.T) {
			in := testInput()
			in.SharedNetwork = true
			p, err := Build(in, caps(abi))
			l, prots := downgrade(landlockPolicyFor(normalize(in), testFS(), LayoutFHS), abi)
			if diff := cmp.Diff(l, p.Landlock); diff != "" {
				t.Errorf("applied ruleset is not downgrade's (-downgrade +plan):\n%s", diff)
			}
			if diff := cmp.Diff(prots, p.Protections[:len(prots)]); diff != "" {
				t.Errorf("explained protections are not downgrade's (-downgrade +plan):\n%s", diff)
			}
			status := map[string]string{}
			for _, pr := range p.Protections {
				status[pr.Name] = pr.Status
			}
			if tooOld := errors.Is(err, ErrLandlockTooOld); tooOld != (status["filesystem allow-list"] == StatusDegraded) {
				t.Errorf("Build error %v with filesystem allow-list %s", err, status["filesystem allow-list"])
			} else if !tooOld && err != nil {
				t.Fatal(err)
			}
			gates := p.Landlock.HandledFS&ll.AccessFSResolveUnix != 0
			var notify int
			for _, r := range p.Seccomp.Rules {
				if r.Action == ActionNotify {
					notify++
				}
			}
			dgram := false // AF_UNIX SOCK_DGRAM on the socket allow-list
			for _, f := range p.Seccomp.Sockets.Families {
				for _, ty := range f.Types {
					dgram = dgram || (f.Family == afUnix && ty.Type == sockDgram)
				}
			}
			wantMode, wantNotify := GateSupervisor, 2 // connect and bind (shared network)
			if gates {
				wantMode, wantNotify = GateLandlock, 0
			}
			if p.Gate.Mode != wantMode || notify != wantNotify || dgram != gates || (p.Gate.Bind != nil) != !gates {
				t.Errorf("resolve_unix handled %v: gate %q (bind %v), %d notify rules, unix datagram allowed %v", gates, p.Gate.Mode, p.Gate.Bind, notify, dgram)
			}
			if (status["unix datagram sockets"] == StatusEnforced) != gates || (status["abstract unix socket bind"] == StatusEnforced) == gates {
				t.Errorf("resolve_unix handled %v, but explain says %v", gates, status)
			}
			s := p.String()
			for _, pr := range p.Protections {
				if !strings.Contains(s, pr.String()) {
					t.Errorf("explain lacks %q", pr)
				}
			}
		})
	}
}
