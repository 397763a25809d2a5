package unixgate

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestServeReturnsWhenContextEnds(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	c := startChild(t, childPlan{Probes: []probe{{Name: "sleep", Kind: "sleep", N: 30000}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := c.serve(ctx, Policy{Instance: "ctx"}, &syncBuffer{})
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
	done := c.serve(context.Background(), Policy{Instance: "kill", Allow: []string{full}}, &syncBuffer{})
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
