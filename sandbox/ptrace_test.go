package sandbox

import (
	"strings"
	"testing"
)

// TestPtraceScopeIsExplained: issue 9 defect 9. On ccade3b explain said
// "enforced" whatever Yama allowed.
func TestPtraceScopeIsExplained(t *testing.T) {
	in := Input{Instance: "web", User: "u", Group: "u", Directory: "/srv/web", StateDir: "/var/lib/web", ListenPort: 8080}
	for _, tc := range []struct {
		abi, scope int
		status     string
		want       string
	}{
		{7, NoYama, StatusEnforced, "seccomp supervisor"},
		{7, 1, StatusEnforced, "seccomp supervisor"},
		{7, 2, StatusDegraded, "ptrace_scope=2"},
		{7, 3, StatusDegraded, "BROKEN: kernel.yama.ptrace_scope=3"},
		{9, 3, StatusEnforced, "Landlock resolve_unix"},
	} {
		p, err := Build(in, Caps{LandlockABI: tc.abi, SeccompAPI: 6, Layout: LayoutFHS, PtraceScope: tc.scope, FS: testFS()})
		if err != nil {
			t.Fatal(err)
		}
		var got *Protection
		for _, pr := range p.Protections {
			if pr.Name == "unix socket allow-list" {
				got = &pr
			}
		}
		if got == nil || got.Status != tc.status || !strings.Contains(got.Detail, tc.want) {
			t.Errorf("ABI %d, ptrace_scope %d: %+v, want %s with %q", tc.abi, tc.scope, got, tc.status, tc.want)
		}
	}
}
