package netpolicy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
)

// TestEnsureNetnsPinsInTheHostMountNamespace: a caller in a mount namespace
// of its own (the setup unit with ProtectSystem=, PrivateTmp=, …) must pin
// the instance netns where the host, and so the server's
// NetworkNamespacePath=, sees it. The helper runs Ensure's pin from a
// private (slave) mount namespace made by unshare(1); the test, in the
// host's, must then find the netns mounted at /run/netns/<name>. Twin: from
// the host's own namespace it is there too. PID 1 may be unreadable where
// the test runs (a container), so the helper takes the test's own mount
// namespace as the host's; what is tested is the setns into it and the pin.
func TestEnsureNetnsPinsInTheHostMountNamespace(t *testing.T) {
	testkit.RequireRoot(t, "mount namespaces and /run/netns", "sudo go test ./netpolicy -run TestEnsureNetnsPinsInTheHostMountNamespace")
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare(1) (util-linux) is needed: %v", err)
	}
	if err := ensureRunDir(); err != nil { // shared, as a previous setup leaves it
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		private bool
	}{
		{name: "FromAPrivateMountNamespace", private: true},
		{name: "FromTheHostMountNamespace", private: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(NetnsRunDir, "ocnix-pin-"+testkit.RandHex(4))
			t.Cleanup(func() {
				if err := deleteNetnsHere(path); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
			plan, _ := json.Marshal(Plan{NetnsPath: path})
			argv := []string{os.Args[0], "-test.run=^$"}
			if tt.private {
				argv = append([]string{"unshare", "--mount", "--propagation", "slave", "--"}, argv...)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), helperEnv+"=pin", helperEnv+"_PLAN="+string(plan),
				helperEnv+"_HOSTMNT="+fmt.Sprintf("/proc/%d/ns/mnt", os.Getpid()))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper %v: %v\n%s", argv, err, out)
			}
			ok, err := isNetnsMount(path)
			if err != nil || !ok {
				t.Errorf("after the pin from %s, %s in the host's mount namespace is a netns mount: %v (%v); want true", tt.name, path, ok, err)
			}
		})
	}
}
