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
		var got *Protection
		for _, p := range buildProtections(in, tc.abi, tc.scope) {
			if p.Name == "unix socket allow-list" {
				got = &p
			}
		}
		if got == nil || got.Status != tc.status || !strings.Contains(got.Detail, tc.want) {
			t.Errorf("ABI %d, ptrace_scope %d: %+v, want %s with %q", tc.abi, tc.scope, got, tc.status, tc.want)
		}
	}
}
