package launcher

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ocnix/ocnix/internal/setuplock"
)

// TestMain is the launcher package's only TestMain: extend it rather than
// adding another.
func TestMain(m *testing.M) {
	_, err := os.Stat(setuplock.DefaultDir)
	lockDirExisted := err == nil
	// The private dirs live in the production place; remove what the tests
	// created (each test removes its own instance's dir).
	var madeDirs []string
	for d := LauncherDirBase; d != "/" && d != "/var/lib"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err != nil {
			madeDirs = append(madeDirs, d)
		}
	}
	code := m.Run()
	for _, d := range madeDirs {
		os.Remove(d) // only if empty
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if !lockDirExisted {
		os.Remove(setuplock.DefaultDir) // only if the tests left it empty
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	binErr    error
)

// launcherBin builds opencode-launcher once per test binary, on first use,
// so that unit-only runs and fuzz workers never pay for it. The binary is
// what drives init scripts through the real `run -- SCRIPT`.
func launcherBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "ocnix-setup-bin-"); binErr != nil {
			return
		}
		// Init scripts run through the binary as the instance user.
		os.Chmod(binDir, 0o755)
		p := filepath.Join(binDir, "opencode-launcher")
		out, err := exec.Command("go", "build", "-o", p, "github.com/ocnix/ocnix/cmd/opencode-launcher").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build opencode-launcher: %w\n%s", err, out)
			return
		}
		binPath = p
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
