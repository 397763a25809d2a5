package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/vishvananda/netns"
)

// hostForwardingOff makes this host look like a fresh one (testkit.HostForwardingOff).
func hostForwardingOff(t *testing.T) {
	t.Helper()
	requireRoot(t)
	testkit.HostForwardingOff(t)
}

// serveDNSIn runs an authoritative server for ocnix.test. on 0.0.0.0:53/udp
// inside the test internet: a wildcard socket on a netns with several
// addresses, as real resolvers run; every A query gets answer.
func serveDNSIn(t *testing.T, ns, answer string) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var pc net.PacketConn
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err = netns.Set(h); err == nil {
			pc, err = net.ListenPacket("udp4", "0.0.0.0:53")
		}
	}()
	<-done
	if err != nil {
		t.Fatalf("DNS server in %s: %v", ns, err)
	}
	testkit.ServeA(t, pc, "ocnix.test.", answer)
}

// inNetns runs the probe in the named test netns, outside any sandbox.
func inNetns(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, probeBin}, args...)...).Output()
	if err != nil {
		t.Fatalf("probe %v in %s: %v", args, ns, err)
	}
	return strings.TrimSpace(string(out))
}

// TestNetworkOnAFreshHost: on a host that starts with IPv4 forwarding off,
// setup alone makes an isolated instance reach what it may over TCP and
// UDP (a DNS lookup through its own resolv.conf), and nothing else on the
// host is routed: a "lan" and a "wan" netns behind the host cannot reach
// each other although setup turned forwarding on for both their links.
func TestNetworkOnAFreshHost(t *testing.T) {
	hostForwardingOff(t)
	wan := newTestInternet(t)
	lan := newTestInternet(t)
	serveDNSIn(t, wan.ns, wan.allowed)
	si := newIsolatedInstance(t, "fresh", []string{wan.allowedCIDR, lan.allowedCIDR}, func(in *instance) {
		ni := in.spec["networkIsolation"].(map[string]any)
		ni["nameservers"] = []any{wan.allowed}
	})

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"TCPToAllowedConnects", []string{"connect-tcp", wan.allowed + ":7001"}, "ok"},
		{"TCPToAllowedLANConnects", []string{"connect-tcp", lan.allowed + ":7001"}, "ok"},
		{"DNSLookupOverUDP", []string{"lookup", "api.ocnix.test"}, "ok " + wan.allowed},
		{"UDPToAllowedEchoes", []string{"udp-echo", wan.allowed + ":7002"}, "ok ping"},
		{"UDPToBlockedIsRefused", []string{"udp-echo", wan.blocked + ":7002"}, "EPERM"},
		{"DNSToBlockedIsRefused", []string{"udp-echo", wan.blocked + ":53"}, "EPERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe(tt.args...); got != tt.want {
				t.Errorf("probe %v = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
	t.Run("HostRoutesNothingElse", func(t *testing.T) {
		for _, f := range []string{testkit.AllForwarding, "/proc/sys/net/ipv4/conf/default/forwarding"} {
			if v := testkit.ReadProc(t, f); v != "0" {
				t.Errorf("%s = %s: setup made the host a router", f, v)
			}
		}
		for _, dev := range []string{wan.hostVeth, lan.hostVeth} {
			if v := testkit.ReadProc(t, "/proc/sys/net/ipv4/conf/"+dev+"/forwarding"); v != "1" {
				t.Errorf("forwarding on %s = %s, want 1 (replies arrive there)", dev, v)
			}
		}
		for _, c := range []struct{ from, to *testInternet }{{lan, wan}, {wan, lan}} {
			if got := inNetns(t, c.from.ns, "connect-tcp", c.to.allowed+":7001"); got == "ok" {
				t.Errorf("%s reached %s:7001 through the host", c.from.ns, c.to.allowed)
			}
		}
		// Twin: the same probe reaches the address from inside its own netns.
		if got := inNetns(t, wan.ns, "connect-tcp", wan.allowed+":7001"); got != "ok" {
			t.Errorf("twin: connect inside %s = %q", wan.ns, got)
		}
	})
	t.Run("StatusHasNoWarnings", func(t *testing.T) {
		out, errs, code := si.launcher(context.Background(), "status", "--json")
		if code != 0 {
			t.Fatalf("status: %d %s", code, errs)
		}
		var st struct {
			Problems          []string `json:"problems"`
			ForwardingEnabled []string `json:"forwardingEnabled"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Problems) != 0 {
			t.Errorf("status problems on a working host: %q", st.Problems)
		}
		if got := strings.Join(st.ForwardingEnabled, " "); !strings.Contains(got, wan.hostVeth) || !strings.Contains(got, lan.hostVeth) {
			t.Errorf("status forwardingEnabled = %q, want %s and %s", got, wan.hostVeth, lan.hostVeth)
		}
		// Switched off behind setup's back (what a network manager may do):
		// status says which interface and what to do.
		os.WriteFile("/proc/sys/net/ipv4/conf/"+wan.hostVeth+"/forwarding", []byte("0"), 0o644)
		out, _, _ = si.launcher(context.Background(), "status")
		if !strings.Contains(out, "WARNING: net.ipv4.conf."+wan.hostVeth+".forwarding") || !strings.Contains(out, "run setup again") {
			t.Errorf("status with forwarding off on %s:\n%s", wan.hostVeth, out)
		}
		si.setup()
		if got := si.probe("connect-tcp", wan.allowed+":7001"); got != "ok" {
			t.Errorf("after setup again: connect = %q", got)
		}
	})
	t.Run("TeardownRestoresForwarding", func(t *testing.T) {
		if out, errs, code := si.launcher(context.Background(), "teardown"); code != 0 {
			t.Fatalf("teardown: %d %s %s", code, out, errs)
		}
		for _, dev := range []string{wan.hostVeth, lan.hostVeth} {
			if v := testkit.ReadProc(t, "/proc/sys/net/ipv4/conf/"+dev+"/forwarding"); v != "0" {
				t.Errorf("after the last teardown forwarding on %s = %s, want 0", dev, v)
			}
		}
		if out := mustRun(t, "nft", "list", "tables"); strings.Contains(out, "table inet ocnix\n") {
			t.Errorf("after the last teardown the host forward table is left:\n%s", out)
		}
	})
}
