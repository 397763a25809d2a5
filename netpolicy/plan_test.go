package netpolicy

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./netpolicy -run %s -update)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-golden +got); if intended run with -update:\n%s", path, diff)
	}
}

var exampleInput = Input{
	Instance:      "my-project",
	Enable:        true,
	ListenAddress: "127.0.0.1",
	ListenPort:    8787,
	AllowCIDRs:    []string{"192.0.2.0/25", "192.0.2.128/25", "198.51.100.7/32", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"},
	Nameservers:   []string{"10.0.0.53"},
}

func TestBuildExplainGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
	}{
		{name: "explain-enabled.golden", in: exampleInput},
		{name: "explain-derived-dns-subnet-override.golden", in: Input{Instance: "web", Enable: true, ListenAddress: "0.0.0.0", ListenPort: 4096, AllowCIDRs: []string{"198.18.0.0/15"}, Subnet: "10.250.0.8/30"}},
		{name: "explain-disabled.golden", in: Input{Instance: "plain", ListenPort: 4096}},
		{name: "explain-domains.golden", in: Input{Instance: "agent", Enable: true, ListenAddress: "127.0.0.1", ListenPort: 4096,
			AllowCIDRs: []string{"10.0.0.0/8"}, AllowDomains: []string{"api.anthropic.com", "*.github.com", "registry.npmjs.org:443", "github.com:22"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, p.String())
		})
	}
}

func TestBuildWiring(t *testing.T) {
	p, err := Build(exampleInput)
	if err != nil {
		t.Fatal(err)
	}
	sub := PoolSubnet("my-project")
	host, peer := pairAddrs(sub)
	want := Plan{
		Instance: "my-project", Enable: true,
		Netns: "opencode-my-project", NetnsPath: "/run/netns/opencode-my-project",
		HostVeth: HostVethName("my-project"), PeerVeth: "host0",
		Subnet: sub, SubnetSource: "pool", HostAddr: host, PeerAddr: peer,
		ListenAddress: "127.0.0.1", ListenPort: 8787, ProxyTarget: "127.0.0.1:8787",
		Allow4: []Interval{
			iv("10.0.0.0", "10.255.255.255"),
			iv("192.0.2.0", "192.0.2.255"),
			iv("198.51.100.7", "198.51.100.7"),
		},
		Allow6:      []Interval{iv("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")},
		Nameservers: []netip.Addr{netip.MustParseAddr("10.0.0.53")},
		ResolvConf:  "/etc/netns/opencode-my-project/resolv.conf",
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".Filter", ".Host", ".HostSysctls", ".NetnsSysctls", ".Notes":
			return true
		}
		return false
	}, cmp.Ignore())
	if diff := cmp.Diff(want, p, netipCmp, ignore); diff != "" {
		t.Errorf("Build (-want +got):\n%s", diff)
	}
	if host.Addr().String() != strings.TrimSuffix(sub.Addr().Next().String(), "") || peer.Addr() != host.Addr().Next() {
		t.Errorf("pair addresses %s/%s not .1/.2 of %s", host, peer, sub)
	}
}

func TestBuildSubnetOverride(t *testing.T) {
	p, err := Build(Input{Instance: "x", Enable: true, Subnet: "10.250.0.8/30"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Subnet.String() != "10.250.0.8/30" || p.HostAddr.String() != "10.250.0.9/30" || p.PeerAddr.String() != "10.250.0.10/30" || p.SubnetSource != "override" {
		t.Errorf("override: subnet %s host %s peer %s source %s", p.Subnet, p.HostAddr, p.PeerAddr, p.SubnetSource)
	}
	if got := p.Host.Chains[0].Rules[0].Matches[0].Value; got != "10.250.0.10" {
		t.Errorf("masquerade source = %s, want the peer address", got)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{name: "EmptyName", in: Input{Enable: true}, want: "netpolicy: instance name is empty"},
		{name: "SlashInName", in: Input{Instance: "a/b", Enable: true}, want: `instance name "a/b"`},
		{name: "BadNameEvenWhenDisabled", in: Input{Instance: "../x"}, want: "instance name"},
		{name: "PortOutOfRange", in: Input{Instance: "x", Enable: true, ListenPort: 70000}, want: "listen port 70000"},
		{name: "CIDRHostBits", in: Input{Instance: "x", Enable: true, AllowCIDRs: []string{"10.0.0.1/8"}}, want: "netpolicy: outboundAllowCidrs: parse cidr \"10.0.0.1/8\": host bits set"},
		{name: "SubnetNot30", in: Input{Instance: "x", Enable: true, Subnet: "10.0.0.0/24"}, want: "networkIsolation.subnet: subnet \"10.0.0.0/24\": must be a /30"},
		{name: "NameserverLoopback", in: Input{Instance: "x", Enable: true, AllowCIDRs: []string{"0.0.0.0/0"}, Nameservers: []string{"127.0.0.53"}}, want: "nameserver 127.0.0.53: is a loopback address"},
		{name: "NameserverNotAllowed", in: Input{Instance: "x", Enable: true, AllowCIDRs: []string{"10.0.0.0/8"}, Nameservers: []string{"9.9.9.9"}}, want: "nameserver 9.9.9.9: is not inside outboundAllowCidrs"},
		{name: "NameserverV6", in: Input{Instance: "x", Enable: true, AllowCIDRs: []string{"2001:db8::/32"}, Nameservers: []string{"2001:db8::53"}}, want: "is IPv6"},
		{name: "NameserverGarbage", in: Input{Instance: "x", Enable: true, Nameservers: []string{"dns.example"}}, want: `nameserver "dns.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildDisabledKeepsNamesForTeardown(t *testing.T) {
	p, err := Build(Input{Instance: "x", ListenPort: 1, AllowCIDRs: []string{"garbage is not parsed when disabled"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{Instance: "x", Netns: "opencode-x", NetnsPath: "/run/netns/opencode-x", HostVeth: HostVethName("x"), PeerVeth: "host0", ResolvConf: "/etc/netns/opencode-x/resolv.conf"}
	if diff := cmp.Diff(want, p, netipCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPlanJSONRoundTrip(t *testing.T) {
	p, err := Build(exampleInput)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back, netipCmp); diff != "" {
		t.Errorf("JSON round trip (-orig +back):\n%s", diff)
	}
	golden(t, "plan.json.golden", string(b)+"\n")
}

func TestFilterInvariants(t *testing.T) {
	p, err := Build(exampleInput)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Filter.Chains {
		if c.Policy != "drop" {
			t.Errorf("chain %s policy %s: the filter must default-deny", c.Name, c.Policy)
		}
		last := c.Rules[len(c.Rules)-1]
		if last.Verdict != VerdictDrop && last.Verdict != VerdictReject {
			t.Errorf("chain %s: last rule %q is not a deny", c.Name, last)
		}
		seen := map[string]bool{}
		for _, r := range c.Rules {
			if seen[r.Key] || !strings.HasPrefix(r.Comment, "ocnix:my-project:") {
				t.Errorf("chain %s: rule key %q duplicate or comment %q not tagged", c.Name, r.Key, r.Comment)
			}
			seen[r.Key] = true
		}
	}
	if len(p.Host.Chains) != 1 || p.Host.Chains[0].Type != "nat" {
		t.Errorf("host table must hold only the nat chain: %v", p.Host)
	}
}

func TestPublishCommands(t *testing.T) {
	p, _ := Build(exampleInput)
	got := p.PublishCommands()[0]
	want := "systemd-socket-activate -l 127.0.0.1:8787 -- ip netns exec opencode-my-project /lib/systemd/systemd-socket-proxyd 127.0.0.1:8787"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
