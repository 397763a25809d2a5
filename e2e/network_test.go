package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// testInternet is a network namespace the test creates, routed from the
// host, with one address in an allowed CIDR and one in a blocked CIDR, both
// from 198.18.0.0/15 (benchmarking space that routes nowhere off this
// machine). Servers run inside it. Everything is removed when the test ends.
type testInternet struct {
	ns, hostVeth     string
	allowed, blocked string // addresses
	allowedCIDR      string
	link, peer       string // host side and netns side of the /31
	octet            int
}

func newTestInternet(t *testing.T) *testInternet {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 2)
	rand.Read(b)
	r := hex.EncodeToString(b)
	routes := mustRun(t, "ip", "-4", "route", "show", "table", "all")
	octet := -1
	for i := 0; i < 250; i++ {
		o := 100 + (int(b[0])+i)%150
		if !strings.Contains(routes, fmt.Sprintf("198.18.%d.", o)) && !strings.Contains(routes, fmt.Sprintf("198.19.%d.", o)) {
			octet = o
			break
		}
	}
	if octet < 0 {
		t.Fatal("no free octet in 198.18.0.0/15")
	}
	ti := &testInternet{
		ns:          "ocnix-e2e-inet-" + r,
		hostVeth:    "ocei" + r,
		allowed:     fmt.Sprintf("198.18.%d.10", octet),
		blocked:     fmt.Sprintf("198.19.%d.10", octet),
		allowedCIDR: fmt.Sprintf("198.18.%d.0/24", octet),
	}
	t.Cleanup(func() {
		exec.Command("ip", "route", "del", fmt.Sprintf("198.18.%d.0/24", octet)).Run()
		exec.Command("ip", "route", "del", fmt.Sprintf("198.19.%d.0/24", octet)).Run()
		exec.Command("ip", "link", "del", ti.hostVeth).Run()
		exec.Command("ip", "netns", "del", ti.ns).Run()
	})
	link := fmt.Sprintf("198.19.%d.248", octet)
	peer := fmt.Sprintf("198.19.%d.249", octet)
	ti.link, ti.peer, ti.octet = link, peer, octet
	mustRun(t, "ip", "netns", "add", ti.ns)
	mustRun(t, "ip", "link", "add", ti.hostVeth, "type", "veth", "peer", "name", "inet0", "netns", ti.ns)
	mustRun(t, "ip", "addr", "add", link+"/31", "dev", ti.hostVeth)
	// Replies arrive on this interface like on an uplink: setup, not the
	// test, turns forwarding on for it.
	mustRun(t, "ip", "link", "set", ti.hostVeth, "up")
	mustRun(t, "ip", "-n", ti.ns, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", ti.ns, "addr", "add", peer+"/31", "dev", "inet0")
	mustRun(t, "ip", "-n", ti.ns, "link", "set", "inet0", "up")
	mustRun(t, "ip", "-n", ti.ns, "addr", "add", ti.allowed+"/32", "dev", "lo")
	mustRun(t, "ip", "-n", ti.ns, "addr", "add", ti.blocked+"/32", "dev", "lo")
	mustRun(t, "ip", "-n", ti.ns, "route", "add", "default", "via", link)
	mustRun(t, "ip", "route", "add", fmt.Sprintf("198.18.%d.0/24", octet), "via", peer)
	mustRun(t, "ip", "route", "add", fmt.Sprintf("198.19.%d.0/24", octet), "via", peer)
	for _, a := range []string{ti.allowed, ti.blocked} {
		startBg(t, true, "ip", "netns", "exec", ti.ns, probeBin, "serve-tcp", a+":7001")
		startBg(t, true, "ip", "netns", "exec", ti.ns, probeBin, "serve-udp", a+":7002")
	}
	return ti
}

// isolatedInstance is a sandboxed instance with network isolation on,
// allowing the test internet's allowed CIDR; teardown runs at cleanup.
func newIsolatedInstance(t *testing.T, name string, allow []string, mutate func(in *instance)) *sandboxInstance {
	t.Helper()
	si := newSandboxInstance(t, name, func(in *instance) {
		cidrs := make([]any, len(allow))
		for i, c := range allow {
			cidrs[i] = c
		}
		in.spec["networkIsolation"] = map[string]any{"enable": true, "outboundAllowCidrs": cidrs}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if out, errs, code := in.launcher(ctx, "teardown"); code != 0 {
				t.Errorf("teardown exit %d: %s %s", code, out, errs)
			}
			if _, err := os.Stat("/run/netns/opencode-" + in.name); err == nil {
				t.Errorf("teardown left /run/netns/opencode-%s", in.name)
			}
		})
		if mutate != nil {
			mutate(in)
		}
	})
	return si
}

func (in *instance) explainJSON() map[string]any {
	in.t.Helper()
	out, errs, code := in.launcher(context.Background(), "explain", "--json")
	if code != 0 {
		in.t.Fatalf("explain: %d %s", code, errs)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		in.t.Fatal(err)
	}
	return m
}

func TestNetworkEgressFromInsideTheSandbox(t *testing.T) {
	inet := newTestInternet(t)
	si := newIsolatedInstance(t, "net", []string{inet.allowedCIDR}, nil)
	gw := strings.Split(si.explainJSON()["network"].(map[string]any)["hostAddr"].(string), "/")[0]

	// A service on the host, on every address: reachable from the host's own
	// point of view through the instance's gateway address (the twin), but
	// not from inside the instance.
	hostPort := testkit.FreePort(t)
	startBg(t, true, probeBin, "serve-tcp", fmt.Sprintf("0.0.0.0:%d", hostPort))

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"TCPToAllowedConnects", []string{"connect-tcp", inet.allowed + ":7001"}, "ok"},
		{"UDPToAllowedEchoes", []string{"udp-echo", inet.allowed + ":7002"}, "ok ping"},
		{"TCPToBlockedIsRefused", []string{"connect-tcp", inet.blocked + ":7001"}, "ECONNREFUSED"},
		{"UDPToBlockedFails", []string{"udp-echo", inet.blocked + ":7002"}, "EPERM"}, // rejected in output: the send itself fails
		{"HostViaGatewayBlocked", []string{"connect-tcp", fmt.Sprintf("%s:%d", gw, hostPort)}, "ECONNREFUSED"},
		{"HostLoopbackIsNotTheHosts", []string{"connect-tcp", fmt.Sprintf("127.0.0.1:%d", hostPort)}, "ECONNREFUSED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe(tt.args...); got != tt.want {
				t.Errorf("probe %v = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
	// status shows the filter's counters: the blocked TCP attempts above hit
	// the reject rule.
	out, errs, code := si.launcher(context.Background(), "status", "--json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	var st struct {
		NetnsExists bool `json:"netnsExists"`
		Counters    map[string]struct {
			Packets uint64 `json:"packets"`
		} `json:"counters"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if !st.NetnsExists || st.Counters["blocked-tcp"].Packets < 2 || st.Counters["blocked"].Packets < 1 || st.Counters["allow4"].Packets == 0 {
		t.Errorf("status counters = %+v, want the netns, ≥2 blocked-tcp (blocked host, gateway), ≥1 blocked (UDP) and some allow4 packets", st)
	}

	// Twins: the blocked host and the host service answer outside the netns.
	if got := bare(t, "connect-tcp", inet.blocked+":7001"); got != "ok" {
		t.Errorf("bare connect to the blocked test host = %q, want ok", got)
	}
	if got := bare(t, "connect-tcp", fmt.Sprintf("%s:%d", gw, hostPort)); got != "ok" {
		t.Errorf("bare connect to the host service via the gateway address = %q, want ok", got)
	}

	// Fail closed: a flush of the host's whole ruleset (what NixOS does on
	// every nftables reload) must not widen egress. The host ruleset is saved
	// and restored around it.
	t.Run("HostFlushRulesetStaysClosed", func(t *testing.T) {
		saved := mustRun(t, "nft", "list", "ruleset")
		f := t.TempDir() + "/ruleset.nft"
		os.WriteFile(f, []byte("flush ruleset\n"+saved), 0o600)
		mustRun(t, "nft", "flush", "ruleset")
		t.Cleanup(func() { mustRun(t, "nft", "-f", f) })
		if got := si.probe("connect-tcp", inet.blocked+":7001"); got == "ok" {
			t.Errorf("after host flush ruleset, the blocked host is reachable")
		}
		// setup restores the host side (masquerade) and allowed traffic works again.
		si.setup()
		if got := si.probe("connect-tcp", inet.allowed+":7001"); got != "ok" {
			t.Errorf("after setup, allowed host = %q, want ok", got)
		}
	})
}

// TestIsolatedOpencodePublishedOnHost runs the real opencode in an isolated
// instance and reaches it at listen.address:listen.port on the host, through
// systemd-socket-activate and systemd-socket-proxyd inside the netns, as the
// NixOS module's socket and proxy units do.
func TestIsolatedOpencodePublishedOnHost(t *testing.T) {
	bin := opencodeBin(t)
	proxyd := "/lib/systemd/systemd-socket-proxyd"
	if _, err := os.Stat(proxyd); err != nil {
		t.Skipf("SKIPPED %s: %s missing; run: sudo make deps (Debian package systemd)", t.Name(), proxyd)
	}
	si := newIsolatedInstance(t, "ocnet", nil, func(in *instance) {
		in.spec["command"] = []any{bin}
	})
	srv := si.start()
	port := si.port()
	startBg(t, false, "systemd-socket-activate", "-l", fmt.Sprintf("127.0.0.1:%d", port),
		"ip", "netns", "exec", "opencode-"+si.name, proxyd, fmt.Sprintf("127.0.0.1:%d", port))
	h := waitHealthy(t, fmt.Sprintf("http://127.0.0.1:%d", port), srv, 90*time.Second)
	if h["healthy"] != true {
		t.Fatalf("health = %v", h)
	}
	// The server really is inside the netns: nothing listens on the host's
	// own port except the socket activator, and the netns has the server.
	ss := mustRun(t, "ip", "netns", "exec", "opencode-"+si.name, "ss", "-Htln")
	if !strings.Contains(ss, fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Errorf("no listener on 127.0.0.1:%d inside the netns:\n%s", port, ss)
	}
}
