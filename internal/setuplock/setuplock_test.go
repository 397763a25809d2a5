// Package setuplock is the per-instance setup lock: one flock(2)ed file per
// instance in a root-only directory under /run.
package setuplock

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/exitcode"
)

func TestLockSerialisesOneInstanceOnly(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := Acquire(ctx, dir, "alpha", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Acquire(ctx, dir, "alpha", 300*time.Millisecond, nil)
	if code, _ := exitcode.Of(err); code != exitcode.TempFail {
		t.Fatalf("second lock of alpha = %v (exit %d), want exit %d", err, code, exitcode.TempFail)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("gave up after %v, before its wait of 300ms", waited)
	}

	b, err := Acquire(ctx, dir, "beta", 0, nil)
	if err != nil {
		t.Fatalf("another instance's lock must not wait: %v", err)
	}
	b.Release()

	got := make(chan error, 1)
	go func() {
		l, err := Acquire(ctx, dir, "alpha", 5*time.Second, nil)
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	time.Sleep(150 * time.Millisecond)
	a.Release()
	if err := <-got; err != nil {
		t.Errorf("waiter did not get the lock after release: %v", err)
	}
}

func TestLockDirMustNotBeWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(context.Background(), dir, "alpha", 0, nil); err == nil {
		t.Error("lock in a world-writable directory was accepted")
	}
}
