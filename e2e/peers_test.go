package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
)

// listenAll stands in for a server on port, on every local address (so
// that 127.0.0.2 and ::1 answer too; the tests connect only to loopback):
// what matters to the peer guard is the port a connection goes to and the
// uid of the socket that opens it, not who listens.
func listenAll(t *testing.T, port int) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// TestInstancesCannotReachEachOther is hole 6: two instances without
// network isolation, each with its own user, on one host. Before the peer
// guard, A connected to B's listen port over loopback (and drove B's agent
// when B had no password). Now neither reaches the other's port nor its
// own (the agent holds its server's password), while each reaches an
// unrelated loopback server, and root and a host user reach both.
func TestInstancesCannotReachEachOther(t *testing.T) {
	a := newInstance(t, "peer-a", nil)
	b := newInstance(t, "peer-b", nil)
	a.setup()
	b.setup()
	pa, pb := a.port(), b.port()
	listenAll(t, pa)
	listenAll(t, pb)
	other := testkit.FreePort(t)
	listenAll(t, other)
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }

	for _, tc := range []struct {
		name string
		from *instance
		to   string
		ok   bool
	}{
		{"AToB", a, addr(pb), false},
		{"BToA", b, addr(pa), false},
		// Its own server too: opencode hands the server password to every
		// command the agent runs (issue 17), so the agent must not reach it.
		{"AToItsOwnPort", a, addr(pa), false},
		{"BToItsOwnPort", b, addr(pb), false},
		{"AToAnUnrelatedLoopbackServer", a, addr(other), true},
		// Every local address goes through lo: 127.0.0.2 and ::1 too.
		{"AToBVia127.0.0.2", a, fmt.Sprintf("127.0.0.2:%d", pb), false},
		{"AToBViaIPv6Loopback", a, fmt.Sprintf("[::1]:%d", pb), false},
		{"BToAViaIPv6Loopback", b, fmt.Sprintf("[::1]:%d", pa), false},
		{"AToItsOwnPortViaIPv6Loopback", a, fmt.Sprintf("[::1]:%d", pa), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.from.probe("connect-tcp", tc.to)
			if tc.ok && got != "ok" {
				t.Errorf("instance %s → %s = %q, want ok", tc.from.name, tc.to, got)
			}
			if !tc.ok && (got == "ok" || !strings.Contains(got, "ECONNREFUSED")) {
				t.Errorf("instance %s → %s = %q, want connection refused (the peer guard's reset)", tc.from.name, tc.to, got)
			}
		})
	}
	t.Run("HostUserReachesBoth", func(t *testing.T) {
		host := testkit.AddUser(t, "ocnix-t-peer-host")
		for _, p := range []int{pa, pb} {
			if got := bare(t, "connect-tcp", addr(p)); got != "ok" {
				t.Errorf("root → %s = %q, want ok", addr(p), got)
			}
			if got := probeAs(t, host, "connect-tcp", addr(p)); got != "ok" {
				t.Errorf("a host user that is no instance's → %s = %q, want ok", addr(p), got)
			}
		}
	})
	t.Run("TeardownUnregisters", func(t *testing.T) {
		if out, errs, code := b.launcher(context.Background(), "teardown"); code != 0 {
			t.Fatalf("teardown of B: exit %d\n%s%s", code, out, errs)
		}
		if got := a.probe("connect-tcp", addr(pb)); got != "ok" {
			t.Errorf("after B's teardown, A → B's former port = %q, want ok (no stale registration)", got)
		}
		if got := a.probe("connect-tcp", addr(pa)); got == "ok" {
			t.Errorf("after B's teardown, A → its own port = %q, want refused (A is still registered)", got)
		}
	})
}

// probeAs runs the probe unconfined as user u: a host user that is no
// instance's.
func probeAs(t *testing.T, u testkit.User, args ...string) string {
	t.Helper()
	cmd := exec.Command(probeBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %v as uid %d: %v", args, u.UID, err)
	}
	return strings.TrimSpace(string(out))
}
