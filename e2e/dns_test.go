package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/vishvananda/netns"
)

// authDNS runs an authoritative DNS server for made-up names at addr inside
// the test internet's netns, until the test ends.
func authDNS(t *testing.T, inet *testInternet, addr string, zone map[string]string) {
	t.Helper()
	ip, _, _ := net.SplitHostPort(addr)
	mustRun(t, "ip", "-n", inet.ns, "addr", "add", ip+"/32", "dev", "lo")
	h, err := netns.GetFromName(inet.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var pc net.PacketConn
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the netns
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		var err error
		pc, err = net.ListenPacket("udp", addr)
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("listen %s in %s: %v", addr, inet.ns, err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		a, ok := zone[strings.ToLower(q.Name)]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(fmt.Sprintf("%s 30 IN A %s", q.Name, a))
			m.Answer = []dns.RR{rr}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// TestDomainEgressThroughTheLauncherResolver: an instance with
// outboundAllowDomains, its resolver run as `opencode-launcher dns` (what
// the opencode-<name>-dns unit runs), and a sandboxed program that
// resolves names through the netns resolv.conf and connects.
func TestDomainEgressThroughTheLauncherResolver(t *testing.T) {
	inet := newTestInternet(t)
	octet := strings.Split(inet.allowed, ".")[2]
	server := fmt.Sprintf("198.19.%s.53", octet)
	authDNS(t, inet, server+":53", map[string]string{
		"allowed.test.": inet.allowed,
		"blocked.test.": inet.blocked,
		"rebind.test.":  "127.0.0.1",
		"script.test.":  inet.allowed,
	})
	si := newIsolatedInstance(t, "dns", nil, func(in *instance) {
		ni := in.spec["networkIsolation"].(map[string]any)
		ni["outboundAllowDomains"] = []any{"allowed.test:7001", "rebind.test:7001", "script.test:7002"}
		ni["nameservers"] = []any{server}
		// setup runs this before any dns unit could: it must resolve and
		// connect through the resolver setup serves for its init scripts.
		script := filepath.Join(in.base, "pre-init.sh")
		body := fmt.Sprintf("#!/bin/sh\nout=$(%s udp-echo script.test:7002)\necho \"pre-init: $out\"\n[ \"$out\" = \"ok ping\" ]\n", probeBin)
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		in.spec["preInitScript"] = script
	})

	// No resolver yet: the name does not resolve, and its address is closed.
	if got := si.probe("connect-tcp", "allowed.test:7001"); got == "ok" {
		t.Fatalf("connected to allowed.test with no resolver running")
	}
	if got := si.probe("connect-tcp", inet.allowed+":7001"); got != "ECONNREFUSED" {
		t.Fatalf("connect to the unresolved address = %q, want ECONNREFUSED", got)
	}

	resolver := exec.Command(launcherBin, "dns", "--config", si.specPath)
	logs := &testkit.LockedBuffer{}
	resolver.Stdout, resolver.Stderr = logs, logs
	resolver.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := resolver.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- resolver.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			resolver.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "resolver ready") {
		if time.Now().After(deadline) {
			t.Fatalf("resolver not ready after 30s:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name, target string
		ok           bool
	}{
		{"AllowedNameConnects", "allowed.test:7001", true},
		{"BlockedNameDoesNotResolve", "blocked.test:7001", false},
		{"BlockedAddressByIPIsRefused", inet.blocked + ":7001", false},
		{"RebindingToLoopbackDoesNotResolve", "rebind.test:7001", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := si.probe("connect-tcp", tt.target)
			if (got == "ok") != tt.ok {
				t.Errorf("probe connect-tcp %s = %q, want ok=%v", tt.target, got, tt.ok)
			}
		})
	}
	// Twin: the blocked host answers outside the instance.
	if got := bare(t, "connect-tcp", inet.blocked+":7001"); got != "ok" {
		t.Errorf("bare connect to the blocked host = %q, want ok", got)
	}
	for _, want := range []string{"opencode-dns-blocked: dns blocked.test.", "opencode-dns-blocked: dns rebind.test. answered 127.0.0.1"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("resolver log lacks %q:\n%s", want, logs)
		}
	}

	status := func() (st struct {
		ResolverAlive *bool `json:"resolverAlive"`
		DNSEntries    []struct {
			Name string `json:"name"`
			Addr string `json:"addr"`
			Port int    `json:"port"`
		} `json:"dnsEntries"`
		Counters map[string]struct {
			Packets uint64 `json:"packets"`
		} `json:"counters"`
	}) {
		out, errs, code := si.launcher(context.Background(), "status", "--json")
		if code != 0 {
			t.Fatalf("status: %d %s", code, errs)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := status()
	if st.ResolverAlive == nil || !*st.ResolverAlive || len(st.DNSEntries) != 2 || st.DNSEntries[0].Name != "allowed.test" ||
		st.DNSEntries[0].Addr != inet.allowed || st.DNSEntries[0].Port != 7001 || st.Counters["dns4-tcp"].Packets == 0 {
		t.Errorf("status = %+v, want the resolver answering, entries allowed.test %s . 7001 and script.test's (from setup's init script), dns4-tcp packets", st, inet.allowed)
	}
	out, _, _ := si.launcher(context.Background(), "status")
	t.Logf("status:\n%s\nresolver log:\n%s", out, logs)
	if !strings.Contains(out, "allowed.test") || !strings.Contains(out, "resolver answering") {
		t.Errorf("status text:\n%s", out)
	}

	// Fail closed: with the resolver stopped, nothing resolves.
	resolver.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("resolver exit after SIGTERM: %v\n%s", err, logs)
	}
	stopped = true
	if got := si.probe("connect-tcp", "allowed.test:7001"); got == "ok" {
		// The address may still be in the set, but the name cannot be resolved.
		t.Errorf("allowed.test resolved with the resolver stopped")
	}
	if st := status(); st.ResolverAlive == nil || *st.ResolverAlive {
		t.Errorf("status says the resolver answers after it stopped")
	}

	// The supervision contract: when the netns it serves is replaced
	// (teardown and setup, what a restart of the setup unit does), the
	// resolver exits 75 so that its unit starts it again in the new one.
	t.Run("ReplacedNetnsExits75", func(t *testing.T) {
		r2 := exec.Command(launcherBin, "dns", "--config", si.specPath)
		logs2 := &testkit.LockedBuffer{}
		r2.Stdout, r2.Stderr = logs2, logs2
		r2.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if err := r2.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r2.Wait() }()
		defer func() {
			r2.Process.Kill()
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs2.String(), "resolver ready") {
			if time.Now().After(deadline) {
				t.Fatalf("resolver not ready after 30s:\n%s", logs2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if out, errs, code := si.launcher(context.Background(), "teardown"); code != 0 {
			t.Fatalf("teardown: %d %s %s", code, out, errs)
		}
		si.setup()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 75 {
				t.Errorf("resolver ended with %v, want exit status 75\n%s", err, logs2)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("resolver still running 30s after its netns was replaced\n%s", logs2)
		}
	})
}
