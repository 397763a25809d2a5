package netpolicy

import (
	"strings"
	"testing"
)

func TestBuildListener(t *testing.T) {
	uid := uint32(1234)
	tests := []struct {
		name string
		in   Input
		want *Listener
	}{
		{"SharedNetworkRegistersPortAndUID", Input{Instance: "a", ListenPort: 8787, UID: &uid}, &Listener{Instance: "a", Port: 8787, UID: 1234}},
		{"IsolatedRegistersToo", Input{Instance: "a", Enable: true, ListenPort: 8787, UID: &uid, Nameservers: []string{}}, &Listener{Instance: "a", Port: 8787, UID: 1234}},
		{"UnknownUserHasNoListener", Input{Instance: "a", ListenPort: 8787}, nil},
		{"NoPortNoListener", Input{Instance: "a", UID: &uid}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.in, HostFacts{})
			if err != nil {
				t.Fatal(err)
			}
			if (p.Listener == nil) != (tt.want == nil) || (p.Listener != nil && *p.Listener != *tt.want) {
				t.Errorf("Listener = %v, want %v", p.Listener, tt.want)
			}
		})
	}
}

// TestSharedTablePeerGuard pins the rules' shape: the reject matches only
// instance uids, only over lo or from an instance veth, only a first SYN,
// only a registered port, its owner's included (the agent holds the server
// password); each instance logs
// under its own prefix; shared users and ports give one element each.
func TestSharedTablePeerGuard(t *testing.T) {
	tbl := SharedTable(nil, []Listener{
		{Instance: "b", Port: 9000, UID: 1002},
		{Instance: "a", Port: 8787, UID: 1001},
		{Instance: "a2", Port: 8788, UID: 1001},
	})
	got := tbl.String()
	for _, want := range []string{
		"elements = { 1001, 1002 }",
		"elements = { 8787, 8788, 9000 }",
		`elements = { 8787 . 1001 comment "ocnix:a:listener", 8788 . 1001 comment "ocnix:a2:listener", 9000 . 1002 comment "ocnix:b:listener" }`,
		`oifname "lo" meta skuid @instance-uids tcp flags syn / syn,ack tcp dport @instance-ports counter reject with tcp reset comment "ocnix:peer-guard:peer-block"`,
		`oifname "oc-*" meta skuid @instance-uids tcp flags syn / syn,ack tcp dport @instance-ports counter reject with tcp reset comment "ocnix:peer-guard:peer-veth-block"`,
		`iifname "oc-*" tcp flags syn / syn,ack tcp dport @instance-ports counter reject with tcp reset comment "ocnix:peer-guard:peer-in-block"`,
		`oifname "lo" meta skuid 1002 tcp flags syn / syn,ack tcp dport @instance-ports limit rate 5/second burst 10 packets log prefix "opencode-b-blocked: " comment "ocnix:b:peer-log"`,
		`iifname "` + HostVethName("b") + `" tcp flags syn / syn,ack tcp dport @instance-ports limit rate 5/second burst 10 packets log prefix "opencode-b-blocked: "`,
		"chain forward {",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("shared table lacks %q:\n%s", want, got)
		}
	}
	if SharedTable(nil, nil).String() != SharedTable(nil, []Listener{}).String() {
		t.Errorf("no listeners: not deterministic")
	}
}

func TestSharedUIDWarnings(t *testing.T) {
	ls := []Listener{
		{Instance: "a", Port: 20001, UID: 990},
		{Instance: "b", Port: 20002, UID: 991},
		{Instance: "c", Port: 20003, UID: 990},
	}
	if got := sharedUIDWarnings(ls, "b"); len(got) != 0 {
		t.Errorf("b has a uid of its own, got %q", got)
	}
	got := sharedUIDWarnings(ls, "a")
	if len(got) != 1 || !strings.Contains(got[0], `"c"`) || !strings.Contains(got[0], "uid 990") {
		t.Errorf("a shares uid 990 with c, got %q", got)
	}
	if got := sharedUIDWarnings(ls, "unregistered"); len(got) != 0 {
		t.Errorf("an unregistered instance, got %q", got)
	}
}
