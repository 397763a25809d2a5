package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestSharedInstanceCannotDialAnIsolatedOnesNetns is red-team finding F2: a
// shared-network instance's SYN to an isolated instance's netns address
// leaves through that instance's veth (not lo) and arrives from the host's
// veth address, which the netns admits to its listen port. The peer guard's
// output rule now covers the instance veths too; root still connects.
func TestSharedInstanceCannotDialAnIsolatedOnesNetns(t *testing.T) {
	a := newInstance(t, "peer-sh", nil)
	a.setup()
	c := newIsolatedInstance(t, "peer-iso", []string{"192.0.2.0/24"}, nil)
	c.setup()
	pc := c.port()
	peer := strings.Split(c.explainJSON()["network"].(map[string]any)["peerAddr"].(string), "/")[0]
	// A server on every address inside C's netns, on C's listen port: what a
	// command of C's may run (opencode itself listens on 127.0.0.1 there).
	startBg(t, true, "ip", "netns", "exec", "opencode-"+c.name, probeBin, "serve-tcp", fmt.Sprintf("0.0.0.0:%d", pc))
	to := fmt.Sprintf("%s:%d", peer, pc)
	if got := bare(t, "connect-tcp", to); got != "ok" {
		t.Fatalf("control: root → %s = %q, want ok", to, got)
	}
	if got := a.probe("connect-tcp", to); got == "ok" || !strings.Contains(got, "ECONNREFUSED") {
		t.Errorf("shared instance %s → isolated instance's %s = %q, want connection refused (the peer guard's reset)", a.name, to, got)
	}
}

// TestExactEphemeralPortRefused is red-team finding F1: the sandbox allows
// binding port 0, and IP_LOCAL_PORT_RANGE narrowed the kernel's pick to the
// one port the instance wanted, another instance's listen port included.
// seccomp now refuses the option (EPERM), and setup refuses a listen port
// inside the host's ephemeral range, which repeated binds of port 0 could
// still reach.
func TestExactEphemeralPortRefused(t *testing.T) {
	a := newInstance(t, "eph", nil)
	a.setup()
	target := strconv.Itoa(45000 + rand.IntN(5000))
	if got := bare(t, "bind-exact-ephemeral", target); got != "ok "+target {
		t.Skipf("this kernel cannot pick an exact port (IP_LOCAL_PORT_RANGE, Linux 6.3): %q", got)
	}
	if got := a.probe("bind-exact-ephemeral", target); got != "EPERM" {
		t.Errorf("inside the sandbox: bind-exact-ephemeral %s = %q, want EPERM", target, got)
	}
	t.Run("SetupRefusesAListenPortInTheRange", func(t *testing.T) {
		b := newInstance(t, "eph-b", nil)
		b.spec["listen"] = map[string]any{"address": "127.0.0.1", "port": 45000}
		b.writeSpec()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, errs, code := b.launcher(ctx, "setup")
		if code != 65 || !strings.Contains(errs, "listen.port 45000") || !strings.Contains(errs, "ephemeral port range") {
			t.Errorf("setup with listen.port 45000: exit %d, want 65 naming listen.port and the ephemeral range\n%s%s", code, out, errs)
		}
		out, errs, code = b.launcher(ctx, "explain")
		if code != 0 || !strings.Contains(out, "listen.port 45000") {
			t.Errorf("explain with listen.port 45000: exit %d, want 0 and a warning naming it\n%s%s", code, out, errs)
		}
	})
}

// TestSetupWarnsAboutASharedUser: the peer guard tells instances apart by the socket
// owner's uid, so two instances that run as one user reach each other's servers. Setup
// now says so, naming both; an instance with a user of its own gets no such warning.
func TestSetupWarnsAboutASharedUser(t *testing.T) {
	a := newInstance(t, "uid-a", nil)
	b := newInstance(t, "uid-b", func(in *instance) {
		in.spec["user"], in.spec["group"] = a.user, a.user
		mustRun(t, "chown", a.user+":"+a.user, in.dir)
	})
	c := newInstance(t, "uid-c", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	setup := func(in *instance) string {
		t.Helper()
		out, errs, code := in.launcher(ctx, "setup")
		if code != 0 {
			t.Fatalf("setup %s exit %d\n%s%s", in.name, code, out, errs)
		}
		return errs
	}
	setup(a)
	if errs := setup(b); !strings.Contains(errs, `instance \"uid-b\" runs as the same uid`) || !strings.Contains(errs, `uid-a`) {
		t.Errorf("setup of uid-b, which runs as uid-a's user, did not warn:\n%s", errs)
	}
	if errs := setup(c); strings.Contains(errs, "same uid") {
		t.Errorf("setup of uid-c, a user of its own, warned:\n%s", errs)
	}
}
