package unixgate

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

func TestServeReturnsWhenContextEnds(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	c := startChild(t, childPlan{Probes: []probe{{Name: "sleep", Kind: "sleep", N: 30000}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := c.serve(ctx, Policy{Instance: "ctx"}, &testkit.LockedBuffer{})
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return within 2s of cancel")
	}
}

// TestServeKilledCallerFreesWorkers kills a child whose connects wait in workers for a
// full backlog: the workers notice the dead notifications and Serve returns promptly,
// long before UnixConnectTimeout.
func TestServeKilledCallerFreesWorkers(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	full := filepath.Join(openTempDir(t), "full.sock")
	fullListener(t, full)
	c := startChild(t, childPlan{Probes: []probe{{Name: "pending", Kind: "pending", Path: full, N: 4}}})
	done := c.serve(context.Background(), Policy{Instance: "kill", Allow: []string{full}}, &testkit.LockedBuffer{})
	time.Sleep(300 * time.Millisecond)
	if err := unix.Kill(c.pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.waited
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil once the child is gone", err)
		}
		t.Logf("Serve returned %v after the child was reaped", time.Since(start))
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return within 3s of the child's death: a worker is stuck")
	}
}

// TestServeCancelAnswersWaitingCallers ends Serve while connects wait in workers: the
// callers get EINTR rather than hanging, and Serve waits for the workers before returning.
func TestServeCancelAnswersWaitingCallers(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	full := filepath.Join(openTempDir(t), "full.sock")
	fullListener(t, full)
	c := startChild(t, childPlan{Probes: []probe{{Name: "pending", Kind: "pending", Path: full, N: 3}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := c.serve(ctx, Policy{Instance: "cancel", Allow: []string{full}}, &testkit.LockedBuffer{})
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return within 2s of cancel")
	}
	c.wait(t, 5*time.Second)
	var res childResult
	if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
		t.Fatalf("parse child output %q: %v", c.stdout.String(), err)
	}
	// A backlog of 0 still queues one connection.
	if diff := cmp.Diff(map[string]int{"ok": 1, "EINTR": 2}, res.Counts["pending"]); diff != "" {
		t.Errorf("caller results (-want +got):\n%s", diff)
	}
}
