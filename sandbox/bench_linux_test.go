package sandbox

import (
	"context"
	"os/exec"
	"testing"
)

// BenchmarkStartupBare and BenchmarkStartupSandboxed compare starting
// /bin/true bare with starting it through Run (re-exec, Landlock,
// seccomp, privilege drop, supervisor). The goal is ≤ 5 ms
// extra.
func BenchmarkStartupBare(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStartupSandboxed(b *testing.B) {
	f := newFixture(b)
	plan, err := Build(f.in, DetectCaps())
	if err != nil {
		b.Fatal(err)
	}
	cmd := Command{Path: "/bin/true", Args: []string{"/bin/true"}, Dir: f.project}
	for b.Loop() {
		code, err := Run(context.Background(), plan, cmd, nil)
		if err != nil || code != 0 {
			b.Fatalf("Run: %d, %v", code, err)
		}
	}
}
