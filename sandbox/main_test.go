package sandbox

import (
	"os"
	"testing"
)

// probeEnv makes the test binary act as a probe program inside the
// sandbox (see probe_linux_test.go).
const probeEnv = "OCNIX_TEST_PROBE"

func TestMain(m *testing.M) {
	// The sandbox child is this test binary re-executed by Run.
	ChildMain()
	if os.Getenv(probeEnv) != "" {
		os.Exit(runProbe(os.Args[1:]))
	}
	os.Exit(m.Run())
}
