package launcher

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ocnix/ocnix/internal/setuplock"
)

// These tests drive the built opencode-launcher, so init scripts go through
// the real `run --config F -- SCRIPT`: netns, privilege drop, Landlock and
// seccomp. They complement setup_e2e_test.go, which tests setup's own logic
// with scripts run as the instance user but unsandboxed.

// launcher runs the built binary and returns its exit code and output.
func (in *testInstance) launcher(args ...string) (int, string) {
	in.t.Helper()
	bin := launcherBin(in.t)
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		in.t.Fatalf("%s %v: %v", bin, args, err)
	}
	return 0, out.String()
}

// binInstance is a testInstance whose setups take the production lock in
// /run/opencode; its lock file is removed afterwards.
func binInstance(t *testing.T) *testInstance {
	t.Helper()
	in := newTestInstance(t) // skips without root
	t.Cleanup(func() { os.Remove(filepath.Join(setuplock.DefaultDir, in.name+".lock")) })
	// Every setup registers the listen port in the host's shared table
	// (the peer guard), isolated or not; teardown is idempotent.
	t.Cleanup(func() {
		if code, out := in.launcher("teardown", "--config", in.specPath); code != 0 {
			t.Errorf("cleanup: teardown exit %d:\n%s", code, out)
		}
	})
	return in
}

type testUser struct{ uid, gid uint32 }

func lookupTestUser(t *testing.T, name string) testUser {
	t.Helper()
	id, err := lookupIdentity(name, name)
	if err != nil {
		t.Fatal(err)
	}
	return testUser{uid: uint32(id.uid), gid: uint32(id.gid)}
}
