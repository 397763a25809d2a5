package launcher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// launcherBin is opencode-launcher built once per test run, for the tests
// that drive the real binary (the init scripts' sandbox comes from its run).
// Empty when not root: those tests skip.
var launcherBin string

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
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "ocnix-setup-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Init scripts run through the binary as the instance user.
		os.Chmod(dir, 0o755)
		launcherBin = filepath.Join(dir, "opencode-launcher")
		cmd := exec.Command("go", "build", "-o", launcherBin, "github.com/ocnix/ocnix/cmd/opencode-launcher")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "launcher tests: build opencode-launcher:", err)
			return 1
		}
		_, err = os.Stat(defaultLockDir)
		lockDirExisted := err == nil
		defer func() {
			if !lockDirExisted {
				os.Remove(defaultLockDir) // only if the tests left it empty
			}
		}()
	}
	return m.Run()
}

// setupHelperMain runs one setup with the test script runner and exits with
// its code, so that a test can kill it at any moment.
func setupHelperMain(spec, lockDir string) int {
	s, err := LoadFile(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitCode(err)
	}
	st := testSetup(s, spec, lockDir, os.Stderr)
	if err := st.run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitCode(err)
	}
	return 0
}
