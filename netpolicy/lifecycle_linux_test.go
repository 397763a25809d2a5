package netpolicy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	ifindexRE = regexp.MustCompile(`(?m)^\d+: |@if\d+`)
	macRE     = regexp.MustCompile(`link/ether [0-9a-f:]{17}`)
)

// recreated masks what legitimately differs when links are recreated
// (ifindex, random MAC), for comparing a repaired setup with a clean one.
func recreated(s string) string {
	return macRE.ReplaceAllString(ifindexRE.ReplaceAllString(s, "N: "), "link/ether MAC")
}

// dumps renders everything Ensure owns, for before/after comparisons.
func dumps(t testing.TB, p Plan) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "netns", "exec", p.Netns, "nft", "list", "ruleset"},
		{"ip", "-n", p.Netns, "-d", "link", "show"},
		{"ip", "-n", p.Netns, "addr", "show"},
		{"ip", "-n", p.Netns, "route", "show"},
		{"ip", "-d", "link", "show", "dev", p.HostVeth},
		{"ip", "addr", "show", "dev", p.HostVeth},
		{"nft", "list", "table", "ip", HostTableName(p.Instance)},
		{"cat", p.ResolvConf},
		{"sysctl", "net.ipv4.conf." + p.HostVeth + ".forwarding", "net.ipv6.conf." + p.HostVeth + ".disable_ipv6"},
		{"ip", "netns", "exec", p.Netns, "sysctl", "net.ipv6.conf.host0.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"},
	} {
		b.WriteString("$ " + strings.Join(args, " ") + "\n")
		b.WriteString(counterRE.ReplaceAllString(run(t, args...), "counter"))
	}
	return b.String()
}

func TestEnsureTwiceIsIdentical(t *testing.T) {
	requireRoot(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: []string{"198.18.0.0/24", "2001:db8::/32"}})
	before := dumps(t, p)
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, dumps(t, p)); diff != "" {
		t.Errorf("second Ensure changed state (-first +second):\n%s", diff)
	}
}

// TestRenderingMatchesKernel checks that Plan.String shows exactly what
// the kernel holds after Ensure, as `nft list` prints it.
func TestRenderingMatchesKernel(t *testing.T) {
	requireRoot(t)
	norm := func(s string) string {
		return strings.Join(strings.Fields(counterRE.ReplaceAllString(s, "counter")), " ")
	}
	// What the plan chose from the host is what lands on disk.
	host := HostFactsFromResolvConf([]byte("nameserver 127.0.0.53\nnameserver 198.18.0.53\nnameserver 198.18.7.53\n"))
	for _, tc := range []struct {
		name    string
		cidrs   []string
		domains []string
	}{
		{name: "Empty", cidrs: nil},
		{name: "HostNameservers", cidrs: []string{"198.18.0.0/24"}},
		{name: "Domains", cidrs: []string{"198.18.0.0/24"}, domains: []string{"allowed.test", "*.wild.test:8443"}},
		{name: "MergedAdjacentToPrefix", cidrs: []string{"198.18.0.0/24", "198.18.1.0/24", "198.18.0.5/32"}},
		{name: "MergedToRange", cidrs: []string{"198.18.4.0/24", "198.18.5.0/25", "203.0.113.7/32"}},
		{name: "IPv6", cidrs: []string{"2001:db8::/48", "2001:db8:1::/48", "2001:db8:ff::1/128"}},
		{name: "WholeSpaceIsOpenEnded", cidrs: []string{"0.0.0.0/0", "::/0"}},
		{name: "TopOfSpace", cidrs: []string{"255.255.255.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setupInstanceOn(t, Input{Instance: testName(), Enable: true, ListenPort: 4096, AllowCIDRs: tc.cidrs, AllowDomains: tc.domains}, host)
			if b, err := os.ReadFile(p.ResolvConf); err != nil || string(b) != p.ResolvConfContent {
				t.Errorf("%s = %q (%v), want the plan's %q", p.ResolvConf, b, err, p.ResolvConfContent)
			}
			if tc.name == "HostNameservers" && !strings.Contains(p.ResolvConfContent, "\nnameserver 198.18.0.53\n") {
				t.Errorf("the host's usable nameserver is not in the plan:\n%s", p.ResolvConfContent)
			}
			for _, s := range p.HostSysctls.List() {
				b, err := os.ReadFile(s.path())
				if s == p.HostSysctls.LogAllNetns && errors.Is(err, fs.ErrNotExist) {
					continue // not in a container's netns; Ensure tolerates it too
				}
				if err != nil || strings.TrimSpace(string(b)) != s.Value {
					t.Errorf("host sysctl %s = %q (%v), want %s", s.Key, b, err, s.Value)
				}
			}
			for _, s := range p.NetnsSysctls.List() {
				if got := strings.TrimSpace(run(t, "ip", "netns", "exec", p.Netns, "sysctl", "-n", s.Key)); got != s.Value {
					t.Errorf("netns sysctl %s = %q, want %s", s.Key, got, s.Value)
				}
			}
			got := run(t, "ip", "netns", "exec", p.Netns, "nft", "list", "table", "inet", FilterTable)
			if diff := cmp.Diff(norm(p.Filter.String()), norm(got)); diff != "" {
				t.Errorf("filter rendering differs from kernel (-plan +kernel):\n%s\nkernel:\n%s", diff, got)
			}
			got = run(t, "nft", "list", "table", "ip", HostTableName(p.Instance))
			if diff := cmp.Diff(norm(p.Host.String()), norm(got)); diff != "" {
				t.Errorf("host rendering differs from kernel (-plan +kernel):\n%s", diff)
			}
		})
	}
}

func TestEnsureConvergesAfterKill9(t *testing.T) {
	requireRoot(t)
	ti := newInternet(t)
	in := Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: []string{ti.AllowedCIDR()}}
	p := setupInstance(t, in)
	want := dumps(t, p)
	if err := Teardown(p); err != nil {
		t.Fatal(err)
	}
	// Kill a subprocess running Ensure at different points of its run,
	// from "before it started" to "after it finished", then converge.
	for _, d := range []time.Duration{0, 2, 5, 6, 7, 8, 9, 10, 12, 15, 20, 30, 40, 60, 100} {
		cmd := helperCmd(t, "ensure", p)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		state := stage(p)
		if strings.Contains(state, "route") && !strings.Contains(state, "filter") {
			t.Errorf("kill after %dms left a routed netns without its filter (%s)", d, state)
		}
		if err := Ensure(p); err != nil {
			t.Fatalf("kill after %dms (%s done): Ensure: %v", d, state, err)
		}
		if diff := cmp.Diff(recreated(want), recreated(dumps(t, p))); diff != "" {
			t.Errorf("kill after %dms (%s): state after Ensure differs from a clean setup (-clean +got):\n%s", d, state, diff)
		}
		if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err != nil {
			t.Errorf("kill after %dms: allowed connect after converge: %v", d, err)
		}
		t.Logf("killed after %dms with %s done: converged", d, state)
		if err := Teardown(p); err != nil {
			t.Fatal(err)
		}
	}
	// Partial states made by hand.
	partial := []struct {
		name   string
		break_ func()
	}{
		{name: "EmptyMountPointFile", break_: func() { os.WriteFile(p.NetnsPath, nil, 0o444) }},
		{name: "NetnsWithoutVeth", break_: func() { Ensure(p); run(t, "ip", "link", "del", p.HostVeth) }},
		{name: "HostTableMissing", break_: func() { Ensure(p); run(t, "nft", "delete", "table", "ip", HostTableName(p.Instance)) }},
		{name: "FilterTableMissing", break_: func() {
			Ensure(p)
			run(t, "ip", "netns", "exec", p.Netns, "nft", "delete", "table", "inet", FilterTable)
		}},
		{name: "StaleAddressAndNoRoute", break_: func() {
			Ensure(p)
			run(t, "ip", "-n", p.Netns, "addr", "add", "192.0.2.99/24", "dev", PeerVeth)
			run(t, "ip", "-n", p.Netns, "route", "del", "default")
			run(t, "ip", "link", "set", p.HostVeth, "down")
		}},
	}
	for _, tc := range partial {
		t.Run(tc.name, func(t *testing.T) {
			tc.break_()
			if err := Ensure(p); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if diff := cmp.Diff(recreated(want), recreated(dumps(t, p))); diff != "" {
				t.Errorf("did not converge (-clean +got):\n%s", diff)
			}
			if err := Teardown(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// stage names which of Ensure's steps had completed, in order.
func stage(p Plan) string {
	var done []string
	if ok, _ := isNetnsMount(p.NetnsPath); ok {
		done = append(done, "netns")
	}
	if _, err := runErr("ip", "netns", "exec", p.Netns, "nft", "list", "table", "inet", FilterTable); err == nil {
		done = append(done, "filter")
	}
	if _, err := runErr("ip", "link", "show", p.HostVeth); err == nil {
		done = append(done, "veth")
	}
	if out, _ := runErr("ip", "-n", p.Netns, "route"); strings.Contains(out, "default") {
		done = append(done, "route")
	}
	if _, err := runErr("nft", "list", "table", "ip", HostTableName(p.Instance)); err == nil {
		done = append(done, "host-nat")
	}
	if _, err := os.Stat(p.ResolvConf); err == nil {
		done = append(done, "resolv.conf")
	}
	if len(done) == 0 {
		return "nothing"
	}
	return strings.Join(done, "+")
}

func assertGone(t *testing.T, p Plan) {
	t.Helper()
	if _, err := os.Lstat(p.NetnsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists (err %v)", p.NetnsPath, err)
	}
	if _, err := os.Lstat("/etc/netns/" + p.Netns); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/etc/netns/%s still exists (err %v)", p.Netns, err)
	}
	if out := run(t, "ip", "-o", "link", "show"); strings.Contains(out, p.HostVeth) {
		t.Errorf("link %s still exists", p.HostVeth)
	}
	if out := run(t, "nft", "list", "tables"); strings.Contains(out, HostTableName(p.Instance)+"\n") {
		t.Errorf("host table %s still exists", HostTableName(p.Instance))
	}
	if out := run(t, "ip", "netns", "list"); strings.Contains(out, p.Netns+" ") || strings.Contains(out, p.Netns+"\n") {
		t.Errorf("ip netns list still shows %s", p.Netns)
	}
}

func TestTeardownLeavesNothing(t *testing.T) {
	requireRoot(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{"198.18.0.0/24"}})
	if err := Teardown(p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
	if err := Teardown(p); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	// Teardown of the disabled plan for the same instance also works.
	off, _ := Build(Input{Instance: p.Instance}, HostFacts{})
	if err := Teardown(off); err != nil {
		t.Errorf("Teardown of disabled plan: %v", err)
	}
}

func TestTwoInstancesIndependent(t *testing.T) {
	ti := newInternet(t)
	a := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})
	b := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})
	bBefore := dumps(t, b)
	if err := Teardown(a); err != nil {
		t.Fatal(err)
	}
	assertGone(t, a)
	if diff := cmp.Diff(bBefore, dumps(t, b)); diff != "" {
		t.Errorf("tearing down A changed B (-before +after):\n%s", diff)
	}
	if err := tcpHello(t, b.NetnsPath, ti.tcp(ti.allowed)); err != nil {
		t.Errorf("B lost egress after A's teardown: %v", err)
	}
	// Setting A up again leaves B alone too.
	if err := Ensure(a); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bBefore, dumps(t, b)); diff != "" {
		t.Errorf("setting up A changed B (-before +after):\n%s", diff)
	}
}

// TestHostFlushRulesetFailsClosed flushes the HOST ruleset, as NixOS does
// on every nftables reload. This is disruptive for a moment to any other
// rules on this host: they are saved first and restored right after.
func TestHostFlushRulesetFailsClosed(t *testing.T) {
	ti := newInternet(t)
	k := openKmsg(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})
	saved := run(t, "nft", "list", "ruleset")
	f, err := os.CreateTemp("", "ocnix-saved-ruleset-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(saved)
	f.Close()
	restored := false
	t.Cleanup(func() {
		if restored {
			os.Remove(f.Name())
			return
		}
		// The test failed between flush and restore: restore now.
		tryRun("nft", "flush", "ruleset")
		if out, err := runErr("nft", "-f", f.Name()); err != nil {
			t.Errorf("RESTORE OF HOST RULESET FAILED, saved copy kept at %s: %v\n%s", f.Name(), err, out)
			return
		}
		os.Remove(f.Name())
	})
	// Keep the window in which other rules on this host are gone short:
	// flush, probe, restore, then assert.
	run(t, "nft", "flush", "ruleset")
	start := time.Now()
	tcpErr := tcpHello(t, p.NetnsPath, ti.tcp(ti.blocked))
	udpErr := udpEchoTimeout(t, p.NetnsPath, ti.udp(ti.blocked), 200*time.Millisecond)
	ctr, ctrErr := Counters(p)
	tryRun("nft", "flush", "ruleset")
	restoreOut, restoreErr := runErr("nft", "-f", f.Name())
	t.Logf("host ruleset was flushed for %v", time.Since(start))
	if restoreErr != nil {
		t.Fatalf("restore host ruleset: %v\n%s", restoreErr, restoreOut)
	}
	restored = true
	if tcpErr == nil {
		t.Error("after host flush ruleset: blocked TCP connected")
	}
	if udpErr == nil {
		t.Error("after host flush ruleset: blocked UDP echoed")
	}
	if _, hasHost := ctr["host/masquerade"]; ctrErr != nil || hasHost || ctr["blocked-tcp"].Packets == 0 {
		t.Errorf("Counters with the host table gone: %v, %v; want filter counters only", ctr, ctrErr)
	}
	time.Sleep(200 * time.Millisecond)
	if k.fd < 0 {
		t.Logf("not checking the log after host flush ruleset: %s", k.why)
	} else if len(k.lines(LogPrefix(p.Instance))) == 0 {
		t.Error("after host flush ruleset: blocked attempts no longer logged")
	}
	// The next Ensure brings the masquerade (and allowed egress) back.
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
	if err := tcpHello(t, p.NetnsPath, ti.tcp(ti.allowed)); err != nil {
		t.Errorf("after Ensure: allowed connect: %v", err)
	}
}

func TestEnterAndVerify(t *testing.T) {
	ti := newInternet(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}, Nameservers: []string{ti.allowed.String()}})
	// From the host, Verify fails closed.
	if err := Verify(p); !errors.Is(err, ErrNotInNetns) {
		t.Errorf("Verify from host: got %v, want ErrNotInNetns", err)
	}
	cmd := helperCmd(t, "enter", p, helperEnv+"_ALLOWED="+ti.tcp(ti.allowed), helperEnv+"_BLOCKED="+ti.tcp(ti.blocked))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var rep map[string]string
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	want, _ := os.ReadFile(p.ResolvConf)
	if rep["verify"] != "ok" {
		t.Errorf("Verify after Enter: %s", rep["verify"])
	}
	if rep["resolv"] != string(want) {
		t.Errorf("/etc/resolv.conf after Enter = %q, want %q", rep["resolv"], want)
	}
	if rep["allowed"] != "ok" {
		t.Errorf("allowed connect after Enter: %s", rep["allowed"])
	}
	if rep["blocked"] == "ok" {
		t.Errorf("blocked connect after Enter succeeded")
	}
	// The host's resolv.conf was not touched.
	host, _ := os.ReadFile("/etc/resolv.conf")
	if string(host) == string(want) {
		t.Errorf("host /etc/resolv.conf was replaced by the netns one")
	}
}

func TestSubnetClashIsRefused(t *testing.T) {
	requireRoot(t)
	a := setupInstance(t, Input{Instance: testName(), Enable: true})
	aBefore := dumps(t, a)
	b, err := Build(Input{Instance: testName(), Enable: true, Subnet: a.Subnet.String()}, HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupPlan(t, b) })
	err = Ensure(b)
	if err == nil || !strings.Contains(err.Error(), "overlaps host route") || !strings.Contains(err.Error(), a.HostVeth) {
		t.Fatalf("Ensure of a clashing subnet: got %v, want an overlap error naming %s", err, a.HostVeth)
	}
	t.Logf("refused: %v", err)
	assertGone(t, b)
	if diff := cmp.Diff(aBefore, dumps(t, a)); diff != "" {
		t.Errorf("the refused instance changed the existing one:\n%s", diff)
	}
}

// TestVerifyAsUnprivilegedUser runs Verify the way the main unit does: as
// the instance user, already placed in the netns (here by ip netns exec +
// setpriv instead of systemd's NetworkNamespacePath=).
func TestVerifyAsUnprivilegedUser(t *testing.T) {
	requireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("SKIP: setpriv (util-linux) not installed: %v", err)
	}
	p := setupInstance(t, Input{Instance: testName(), Enable: true})
	// The go test binary may sit in a 0700 build dir: copy it somewhere
	// nobody can execute it.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := dir + "/netpolicy.test"
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	drop := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin, "-test.run=^$"}
	helper := helperCmd(t, "verify", p)
	for _, tc := range []struct {
		name   string
		argv   []string
		wantOK bool
	}{
		{name: "InsideNetnsPasses", argv: append([]string{"ip", "netns", "exec", p.Netns}, drop...), wantOK: true},
		{name: "InHostNetnsFailsClosed", argv: drop, wantOK: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			cmd.Env = helper.Env
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify as uid 65534: exit %v, want ok=%v: %s", err, tc.wantOK, out)
			}
			if !tc.wantOK && !strings.Contains(string(out), "refusing to run without isolation") {
				t.Errorf("error does not explain itself: %s", out)
			}
		})
	}
}

func TestEnterRefusesNetnsWithoutFilter(t *testing.T) {
	requireRoot(t)
	p := setupInstance(t, Input{Instance: testName(), Enable: true})
	run(t, "ip", "netns", "exec", p.Netns, "nft", "flush", "ruleset")
	out, err := helperCmd(t, "enter", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "policy drop is missing") {
		t.Fatalf("Enter into a netns without filter: err %v, output %s", err, out)
	}
	t.Logf("refused: %s", out)
	if err := Ensure(p); err != nil {
		t.Fatal(err)
	}
	if out, err := helperCmd(t, "enter", p).CombinedOutput(); err != nil {
		t.Fatalf("Enter after Ensure repaired the filter: %v %s", err, out)
	}
}
