package netpolicy

import "testing"

func TestSmoke(t *testing.T) {
	requireRoot(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: []string{"198.18.7.0/24", "10.255.255.53/32"}})
	t.Log(p)
	t.Log(run(t, "ip", "netns", "exec", p.Netns, "nft", "list", "ruleset"))
	t.Log(run(t, "nft", "list", "table", "ip", HostTableName(p.Instance)))
	t.Log(run(t, "ip", "netns", "exec", p.Netns, "ip", "-d", "addr"))
	t.Log(run(t, "ip", "netns", "exec", p.Netns, "ip", "route"))
	t.Log(run(t, "cat", p.ResolvConf))
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
}
