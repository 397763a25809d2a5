package testkit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AllForwarding is conf.all.forwarding; writing it rewrites every interface
// and conf.default, and it is what net.ipv4.ip_forward shows.
const AllForwarding = "/proc/sys/net/ipv4/conf/all/forwarding"

// HostForwardingOff puts the host in the state of a fresh one: IPv4
// forwarding off everywhere (ip_forward, conf.default and every interface).
// Cleanup restores the values found, after everything registered later
// (instances, test nets) is gone. The caller checks for root.
func HostForwardingOff(t testing.TB) {
	t.Helper()
	saved := map[string]string{}
	paths, err := filepath.Glob("/proc/sys/net/ipv4/conf/*/forwarding")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no forwarding sysctls: %v", err)
	}
	for _, p := range paths {
		saved[p] = ReadProc(t, p)
	}
	t.Cleanup(func() {
		// "all" first: writing it rewrites every interface and default.
		if err := os.WriteFile(AllForwarding, []byte(saved[AllForwarding]), 0o644); err != nil {
			t.Errorf("restore %s: %v", AllForwarding, err)
		}
		for p, v := range saved {
			if p == AllForwarding {
				continue
			}
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("restore %s: %v", p, err)
			}
		}
	})
	if err := os.WriteFile(AllForwarding, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(paths, "/proc/sys/net/ipv4/ip_forward") {
		if v := ReadProc(t, p); v != "0" {
			t.Fatalf("%s = %s after switching forwarding off", p, v)
		}
	}
}

// ReadProc returns a /proc or /sys value without its trailing newline.
func ReadProc(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
