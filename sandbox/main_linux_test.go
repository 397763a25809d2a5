package sandbox

import (
	"os"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit/probe"
)

// probeEnv makes the test binary act as the probe program
// (internal/testkit/probe) inside the sandbox, reporting by exit status.
const probeEnv = "OCNIX_TEST_PROBE"

// superviseEnv makes the test binary call Run with the plan and
// command in the named JSON file, like the launcher does, so a test
// can signal or kill the supervisor (see supervisor_linux_test.go).
const superviseEnv = "OCNIX_TEST_SUPERVISE"

func TestMain(m *testing.M) {
	if f := os.Getenv(superviseEnv); f != "" {
		os.Exit(runSupervisor(f))
	}
	if os.Getenv(probeEnv) != "" {
		os.Exit(probe.Main(os.Args[1:], probe.ExitStatus))
	}
	os.Exit(m.Run())
}
