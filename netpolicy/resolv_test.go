package netpolicy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDeriveNameservers(t *testing.T) {
	allow, _, err := MergeCIDRs([]string{"10.0.0.0/8", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	conf := []byte(`# comment
search example.org
nameserver 127.0.0.53
nameserver 10.255.255.53
nameserver 9.9.9.9
nameserver 2001:db8::53
nameserver ::1
nameserver 192.0.2.1
nameserver nonsense
options edns0
`)
	use, skipped := DeriveNameservers(conf, allow)
	wantUse := []netip.Addr{netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("192.0.2.1")}
	if diff := cmp.Diff(wantUse, use, netipCmp); diff != "" {
		t.Errorf("use (-want +got):\n%s", diff)
	}
	var got []string
	for _, s := range skipped {
		got = append(got, s.Nameserver+": "+strings.SplitN(s.Reason, ":", 2)[0])
	}
	want := []string{
		"127.0.0.53: is a loopback address",
		"9.9.9.9: is not inside outboundAllowCidrs, so the filter would block it",
		"2001:db8::53: is IPv6, which is disabled inside the netns by design",
		"::1: is a loopback address",
		"nonsense: does not parse as an address",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	out := string(renderResolvConf("x", use, skipped))
	if !strings.Contains(out, "nameserver 10.255.255.53\nnameserver 192.0.2.1\n") || !strings.Contains(out, "# skipped host nameserver 127.0.0.53") {
		t.Errorf("resolv.conf:\n%s", out)
	}
	if empty := string(renderResolvConf("x", nil, nil)); strings.Contains(empty, "\nnameserver") || !strings.Contains(empty, "no allowed nameserver") {
		t.Errorf("empty resolv.conf:\n%s", empty)
	}
}
