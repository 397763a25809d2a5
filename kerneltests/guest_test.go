//go:build linux && kernelguest

package kerneltests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/ocnix/ocnix/sandbox"
	"golang.org/x/sys/unix"
)

// The guest tests run only inside the tier's guest (built with -tags
// kernelguest): they drive the launcher binary on the guest's kernel.

const launcher = "/usr/bin/opencode-launcher"

// guestSpec writes an instance spec whose user and directories exist.
func guestSpec(t *testing.T) string {
	t.Helper()
	u := testkit.AddUser(t, "ocnix-kt-"+testkit.RandHex(3))
	// Not t.TempDir: its parent is 0700, and setup checks that the user
	// can reach the project.
	base, err := os.MkdirTemp("/tmp", "ocnix-kt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	project := filepath.Join(base, "project")
	state := filepath.Join(base, "state")
	for _, d := range []string{project, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, u.UID, u.GID)
	}
	spec := filepath.Join(base, "spec.json")
	testkit.WriteJSON(t, spec, map[string]any{
		"name": "kt" + testkit.RandHex(2), "user": u.Username, "group": u.Username,
		"directory": project, "stateDir": state,
		"listen":           map[string]any{"address": "127.0.0.1", "port": testkit.FreePort(t)},
		"sandbox":          map[string]any{"readWritePaths": []string{}, "readOnlyPaths": []string{}, "unixSockets": map[string]any{"allow": []string{}}},
		"networkIsolation": map[string]any{"enable": false, "outboundAllowCidrs": []string{}},
		"command":          []string{"/bin/busybox"},
	})
	return spec
}

func launch(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(launcher, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out), code
}

// TestGuestLandlockABIBelowMinimumIsRefused: on a kernel below the minimum
// ABI (Debian 12's 6.1 has ABI 2) run refuses with exit 69 (EX_UNAVAILABLE)
// and a message that names the kernel's ABI, the minimum and the way out.
func TestGuestLandlockABIBelowMinimumIsRefused(t *testing.T) {
	abi := sandbox.DetectCaps().LandlockABI
	if abi >= sandbox.MinLandlockABI {
		t.Skipf("this kernel has Landlock ABI %d ≥ minimum %d", abi, sandbox.MinLandlockABI)
	}
	spec := guestSpec(t)
	if out, code := launch(t, "setup", "-c", spec); code != 0 {
		t.Logf("setup exit %d:\n%s", code, out)
	}
	out, code := launch(t, "run", "-c", spec, "--", "/bin/true")
	t.Logf("run on Landlock ABI %d: exit %d:\n%s", abi, code, out)
	if code != 69 {
		t.Errorf("run exit %d, want 69", code)
	}
	var u unix.Utsname
	unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	for _, want := range []string{"Landlock ABI " + itoa(abi), "minimum " + itoa(sandbox.MinLandlockABI), "kernel " + release, "Linux 6.2 or newer", "bookworm-backports", "lsm="} {
		if !strings.Contains(out, want) {
			t.Errorf("run's message does not say %q", want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
