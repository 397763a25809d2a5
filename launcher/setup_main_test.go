package launcher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ocnix/ocnix/internal/setuplock"
)

// Environment of the setup helper process (see TestMain): a test re-executes
// this test binary to get a setup it can kill -9.
const (
	helperSpecEnv = "OCNIX_TEST_SETUP_HELPER_SPEC"
	helperLockEnv = "OCNIX_TEST_SETUP_HELPER_LOCKDIR"
)

// TestMain is the launcher package's only TestMain: extend it rather than
// adding another.
func TestMain(m *testing.M) {
	if spec := os.Getenv(helperSpecEnv); spec != "" {
		os.Exit(setupHelperMain(spec, os.Getenv(helperLockEnv)))
	}
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

// setupHelperMain runs one setup with the test script runner and exits with
// its code, so that a test can kill it at any moment.
func setupHelperMain(spec, lockDir string) int {
	s, err := LoadFile(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitCode(err)
	}
	st, err := testSetup(s, spec, lockDir, os.Stderr)
	if err == nil {
		err = st.run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitCode(err)
	}
	return 0
}
