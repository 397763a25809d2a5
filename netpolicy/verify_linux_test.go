package netpolicy

import (
	"strings"
	"testing"
)

// TestVerifyFilterRefusesEveryChangeToTheFilter: VerifyFilter passes on what
// Ensure made and fails, naming the difference, after each way a root
// process in the netns could loosen it; Ensure repairs each.
func TestVerifyFilterRefusesEveryChangeToTheFilter(t *testing.T) {
	requireRoot(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: []string{"198.18.0.0/24", "2001:db8::/32"}})
	if err := VerifyFilter(p); err != nil {
		t.Fatalf("VerifyFilter right after Ensure: %v", err)
	}
	tampers := []struct {
		name, want string
		cmd        []string
	}{
		{"flush ruleset", "is missing", []string{"nft", "flush ruleset"}},
		{"accept everything first", "rules", []string{"nft", "insert rule inet " + FilterTable + " output accept"}},
		{"widen an allow set", "elements", []string{"nft", "add element inet " + FilterTable + " allow4 { 10.0.0.0/8 }"}},
		{"policy accept", "policy", []string{"nft", "add chain inet " + FilterTable + " output { policy accept ; }"}},
		{"an extra table", "unexpected table", []string{"nft", "add table ip extra"}},
		{"a changed rule", "differs", []string{"sh", "-c", "nft -a list chain inet " + FilterTable + " output | awk '/allow4/ {print $NF; exit}' | xargs -I H nft replace rule inet " + FilterTable + " output handle H meta nfproto ipv4 ip daddr 10.0.0.1 counter accept comment \\\"ocnix:" + p.Instance + ":allow4\\\""}},
	}
	for _, tc := range tampers {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			run(t, append([]string{"ip", "netns", "exec", p.Netns}, tc.cmd...)...)
			err := VerifyFilter(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyFilter after %s = %v, want an error mentioning %q\nruleset:\n%s", tc.name, err, tc.want, run(t, "ip", "netns", "exec", p.Netns, "nft", "list", "ruleset"))
			}
			tryRun("ip", "netns", "exec", p.Netns, "nft", "delete", "table", "ip", "extra")
			if err := Ensure(p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyFilter(p); err != nil {
				t.Fatalf("VerifyFilter after Ensure repaired %s: %v", tc.name, err)
			}
		})
	}
}
