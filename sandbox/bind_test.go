package sandbox

import (
	"slices"
	"strings"
	"testing"
)

// TestSharedNetworkGatesBind: issue 10 items 3 and 4 at the plan level. An
// instance in the host's network namespace gets bind(2) notified and a bind
// policy with the TCP ports; an isolated one and ABI 9 do not (the latter
// says DEGRADED).
func TestSharedNetworkGatesBind(t *testing.T) {
	for _, tc := range []struct {
		name          string
		abi           int
		shared        bool
		wantRule      bool
		abstractState string
	}{
		{"SharedBelowABI9", 7, true, true, StatusEnforced},
		{"IsolatedBelowABI9", 7, false, false, StatusDelegated},
		{"SharedABI9", 9, true, false, StatusDegraded},
		{"IsolatedABI9", 9, false, false, StatusDelegated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Instance: "web", User: "u", Group: "u", Directory: "/srv/p", StateDir: "/var/lib/p",
				ListenPort: 8080, BindPorts: []int{9000, 8080}, SharedNetwork: tc.shared}
			p, err := Build(in, Caps{LandlockABI: tc.abi, SeccompAPI: 7, Layout: LayoutFHS, FS: testFS()})
			if err != nil {
				t.Fatal(err)
			}
			hasRule := slices.ContainsFunc(p.Seccomp.Rules, func(r SyscallRule) bool { return r.Syscall == "bind" && r.Action == ActionNotify })
			if hasRule != tc.wantRule {
				t.Errorf("bind notify rule = %v, want %v", hasRule, tc.wantRule)
			}
			if tc.wantRule && (p.Gate.Bind == nil || !slices.Equal(p.Gate.Bind.Ports, []int{8080, 9000})) {
				t.Errorf("gate bind policy = %+v, want ports [8080 9000]", p.Gate.Bind)
			}
			if !tc.wantRule && p.Gate.Bind != nil {
				t.Errorf("gate bind policy %+v without a bind rule", p.Gate.Bind)
			}
			for _, name := range []string{"abstract unix socket bind", "UDP bind"} {
				i := slices.IndexFunc(p.Protections, func(pr Protection) bool { return pr.Name == name })
				if i < 0 || p.Protections[i].Status != tc.abstractState {
					t.Errorf("protection %q = %+v, want status %s", name, p.Protections, tc.abstractState)
				}
			}
			if tc.abstractState == StatusDegraded && !strings.Contains(p.String(), "enable networkIsolation") {
				t.Errorf("explain does not name the remedy:\n%s", p.String())
			}
		})
	}
}
