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
	s, _ := LoadFile(in.specPath)
	st := testSetup(s, in.specPath, in.lockDir, &testkit.LockedBuffer{})
	var err error
	if st.id, err = lookupIdentity(s); err != nil {
		t.Fatal(err)
	}
	if st.priv, err = openPrivateDir(st.layout.Private, st.id.gid); err != nil {
		t.Fatal(err)
	}
	defer st.priv.Close()
	if err := st.recordSetup(setupRunning, ""); err != nil {
		t.Fatal(err)
	}
	failed, why, err := lastSetupFailed(st.layout)
	if err != nil || !failed || !strings.Contains(why, "did not finish") {
		t.Errorf("lastSetupFailed = %v, %q, %v; want failed, \"did not finish\"", failed, why, err)
	}
}
