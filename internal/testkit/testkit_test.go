package testkit

import (
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// asNobodyEnv makes the test binary run TestRequireRootAsNobody's inner
// test: it is started as nobody, so RequireRoot sees a non-root user.
const asNobodyEnv = "OCNIX_TESTKIT_AS_NOBODY"

func TestMain(m *testing.M) {
	if os.Getenv(asNobodyEnv) == "" {
		// Only TestRequireRootSkipsOrFails runs it, as nobody.
		flag.Set("test.skip", "^TestRequireRootInner$")
	}
	os.Exit(m.Run())
}

func TestRequireRootInner(t *testing.T) {
	RequireRoot(t, "the reason", "the command")
	t.Log("REACHED: RequireRoot let a non-root test through")
}

// TestRequireRootSkipsOrFails runs the inner test as nobody: it must skip
// naming the test, the reason and the command, and fail instead under
// RequireRootEnv=1.
func TestRequireRootSkipsOrFails(t *testing.T) {
	RequireRoot(t, "to run a copy of the test binary as nobody", "sudo go test ./internal/testkit/")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	bin := filepath.Join(dir, "testkit.test")
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	for _, tc := range []struct {
		env, want string
		fails     bool
	}{
		{env: "", want: "SKIPPED TestRequireRootInner: needs root (the reason); run: the command"},
		{env: RequireRootEnv + "=1", want: "FAILED TestRequireRootInner: needs root (the reason) and " + RequireRootEnv + "=1 forbids skipping; run: the command", fails: true},
	} {
		c := exec.Command(bin, "-test.run=^TestRequireRootInner$", "-test.v")
		c.Dir = dir
		c.Env = []string{asNobodyEnv + "=1", "PATH=/usr/bin:/bin", tc.env}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := c.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "REACHED") {
			t.Errorf("as nobody with %q: %v, want failure=%v and %q in:\n%s", tc.env, err, tc.fails, tc.want, out)
		}
	}
}

func TestLockedBufferConcurrentWrites(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Errorf("%d bytes, want 800", n)
	}
}
