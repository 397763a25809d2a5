package sandbox

import (
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// BenchmarkStartupPhases times each step of Run's start-up on its own, so
// that the start-up figure can be broken down (README, Benchmarks). The
// process start of a Go binary is measured as `opencode-launcher version`
// in the e2e benchmark; this covers what happens after main starts.
//
//	sudo go test -run '^$' -bench StartupPhases ./sandbox/
func BenchmarkStartupPhases(b *testing.B) {
	f := newFixture(b)
	caps := DetectCaps()
	plan, err := Build(f.in, caps)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("DetectCaps", func(b *testing.B) {
		for b.Loop() {
			DetectCaps()
		}
	})
	b.Run("Build", func(b *testing.B) {
		for b.Loop() {
			if _, err := Build(f.in, caps); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ResolveIdentity", func(b *testing.B) {
		for b.Loop() {
			if _, err := resolveIdentity(plan); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CompileSeccomp", func(b *testing.B) {
		for b.Loop() {
			if _, err := compileSeccomp(plan.Seccomp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckPaths", func(b *testing.B) {
		for b.Loop() {
			if err := checkPaths(plan.Landlock, plan.Gate.OwnDirs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ApplyLandlockOnNewThread", func(b *testing.B) {
		// A thread confined here is retired by the runtime (its goroutine
		// ends locked), so every iteration pays a new thread too.
		var total time.Duration
		for b.Loop() {
			done := make(chan error)
			go func() {
				runtime.LockOSThread()
				t0 := time.Now()
				err := applyLandlock(plan.Landlock, plan.Gate.OwnDirs)
				total += time.Since(t0)
				done <- err
			}()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "apply-ns/op")
	})
	b.Run("ForkExecTrue", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
