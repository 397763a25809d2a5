package launcher

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
)

// setup's own behaviour is tested through the binary in e2e/setup_test.go.
// What stays here needs the package's internals: a record written by
// recordSetup, and the scripts the forgery tests plant.

// counterScript appends word to directory/counter, so a test can count runs.
func counterScript(in *testInstance, name, word string) string {
	return in.script(name, "echo "+word+" >> "+filepath.Join(in.dir, "counter"))
}

// TestLastSetupFailedRefusesWhileARecordSaysRunning: a server start during
// a setup, or after one that crashed, is refused. (Init scripts get past this
// check because run skips it for `-- CMD`.)
func TestLastSetupFailedRefusesWhileARecordSaysRunning(t *testing.T) {
	in := newTestInstance(t)
	in.mustSetup(false)
	s, _ := loadFile(in.specPath)
	h := testApplier(in.specPath, in.lockDir, &testkit.LockedBuffer{})
	id, err := lookupIdentity(s.User, s.Group)
	if err != nil {
		t.Fatal(err)
	}
	l := layoutFor(s)
	if h.priv, err = openPrivateDir(l.Private, id.gid); err != nil {
		t.Fatal(err)
	}
	defer h.priv.Close()
	if err := h.record(setupRunning, "", id); err != nil {
		t.Fatal(err)
	}
	failed, why, err := lastSetupFailed(l)
	if err != nil || !failed || !strings.Contains(why, "did not finish") {
		t.Errorf("lastSetupFailed = %v, %q, %v; want failed, \"did not finish\"", failed, why, err)
	}
}
