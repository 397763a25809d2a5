//go:build linux && kernelguest

package kerneltests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/ocnix/ocnix/internal/testkit/probe"
	"github.com/ocnix/ocnix/sandbox"
	"golang.org/x/sys/unix"
)

// The guest tests run only inside the tier's guest (built with -tags
// kernelguest): they drive the launcher binary on the guest's kernel.

const launcher = "/usr/bin/opencode-launcher"

// guestSpec writes an instance spec whose user and directories exist.
func guestSpec(t *testing.T, mutate ...func(spec map[string]any)) string {
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
	s := map[string]any{
		"name": "kt" + testkit.RandHex(2), "user": u.Username, "group": u.Username,
		"directory": project, "stateDir": state,
		"listen":           map[string]any{"address": "127.0.0.1", "port": testkit.FreePort(t)},
		"sandbox":          map[string]any{"readWritePaths": []string{}, "readOnlyPaths": []string{}, "unixSockets": map[string]any{"allow": []string{}}},
		"networkIsolation": map[string]any{"enable": false, "outboundAllowCidrs": []string{}},
		"command":          []string{"/bin/busybox"},
	}
	for _, m := range mutate {
		m(s)
	}
	testkit.WriteJSON(t, spec, s)
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

// probeName: the test binary acts as the probe (internal/testkit/probe) when it
// runs under this name; the guest has no separate probe program.
const probeName = "ocnix-probe"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == probeName {
		os.Exit(probe.Main(os.Args[1:], probe.Print))
	}
	os.Exit(m.Run())
}

// TestGuestExplainKeepsItsWord runs the launcher's own explain on this
// kernel and, for every claim it calls enforced that a probe can check,
// runs the probe under the launcher's run: the denial must happen, and its
// twin must work. On the host the same is checked at the plan level
// (TestDowngradedPlanKeepsItsWord); this is the launcher binary on the
// kernel users run.
func TestGuestExplainKeepsItsWord(t *testing.T) {
	abi := sandbox.DetectCaps().LandlockABI
	if abi < sandbox.MinLandlockABI {
		t.Skipf("this kernel has Landlock ABI %d < minimum %d: run refuses (TestGuestLandlockABIBelowMinimumIsRefused)", abi, sandbox.MinLandlockABI)
	}
	base, err := os.MkdirTemp("/tmp", "ocnix-kt-word-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	// Sockets the instance may and may not reach, both mode 0666 (DAC
	// would let it in: only the allow-list keeps it out).
	allowed, denied := filepath.Join(base, "allowed.sock"), filepath.Join(base, "denied.sock")
	for _, p := range []string{allowed, denied} {
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		os.Chmod(p, 0o666)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	// A directory outside the grants that DAC would let the instance write.
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o777)
	os.Chmod(outside, 0o777)

	spec := guestSpec(t, func(s map[string]any) {
		s["sandbox"].(map[string]any)["unixSockets"] = map[string]any{"allow": []string{allowed}}
	})
	t.Cleanup(func() { launch(t, "teardown", "-c", spec) })
	if out, code := launch(t, "setup", "-c", spec); code != 0 {
		t.Fatalf("setup exit %d:\n%s", code, out)
	}
	var sp struct {
		Directory string         `json:"directory"`
		User      string         `json:"user"`
		Listen    map[string]any `json:"listen"`
	}
	b, _ := os.ReadFile(spec)
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probeBin := filepath.Join(sp.Directory, probeName)
	if out, err := exec.Command("cp", self, probeBin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	os.Chmod(probeBin, 0o755)

	out, err := exec.Command(launcher, "explain", "-c", spec, "--json").Output()
	if err != nil {
		t.Fatalf("explain --json: %v", err)
	}
	var plan struct {
		Sandbox sandbox.Plan `json:"sandbox"`
	}
	if err := json.Unmarshal(out, &plan); err != nil {
		t.Fatalf("explain --json: %v", err)
	}
	status := map[string]string{}
	for _, p := range plan.Sandbox.Protections {
		status[p.Name] = p.Status
	}
	t.Logf("explain on Landlock ABI %d: %v", abi, status)

	run := func(args ...string) string {
		cmd := exec.Command(launcher, append([]string{"run", "-c", spec, "--", probeBin}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("run %v: %v\n%s", args, err, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	listen := fmt.Sprint(sp.Listen["port"])
	// A process of the instance's user outside the sandbox, for the PID
	// namespace: from inside it must not exist.
	u, err := user.Lookup(sp.User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	sleeper := exec.Command("/bin/busybox", "sleep", "120")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	victim := sleeper.Process.Pid
	other := strconv.Itoa(testkit.FreePort(t))
	checks := []struct {
		protection string
		deny       []string
		twin       []string
		wantTwin   string // "ok" matches "ok" with any detail
	}{
		{"filesystem allow-list", []string{"write", filepath.Join(outside, "f")}, []string{"write", filepath.Join(sp.Directory, "f")}, "ok"},
		{"unix socket allow-list", []string{"connect-unix", denied}, []string{"connect-unix", allowed}, "ok"},
		{"TCP bind", []string{"bind-tcp", other}, []string{"bind-tcp", listen}, "ok"},
		// NETLINK_KOBJECT_UEVENT: built into every kernel and open to any
		// user, but not in the allow-list (the premise below checks the kernel).
		{"socket creation", []string{"socket", "16", "3", "15"}, []string{"socket", "2", "1", "0"}, "ok"},
		{"pid namespace", []string{"pidop", "kill", strconv.Itoa(victim)}, []string{"getpid"}, "ok 2 0"},
	}
	// Premise: outside the sandbox the kernel makes that netlink socket.
	if out, err := exec.Command(probeBin, "socket", "16", "3", "15").Output(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("premise: socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT) outside the sandbox = %q (%v)", out, err)
	}
	checked := 0
	for _, c := range checks {
		t.Run(strings.ReplaceAll(c.protection, " ", "_"), func(t *testing.T) {
			if status[c.protection] != sandbox.StatusEnforced {
				t.Skipf("explain says %q is %q on this kernel: nothing enforced to check", c.protection, status[c.protection])
			}
			checked++
			denied, twin := run(c.deny...), run(c.twin...)
			t.Logf("%v → %q; twin %v → %q", c.deny, denied, c.twin, twin)
			if strings.HasPrefix(denied, "ok") || denied == "" {
				t.Errorf("explain calls %q enforced, but %v inside = %q", c.protection, c.deny, denied)
			}
			if twin != c.wantTwin && !(c.wantTwin == "ok" && strings.HasPrefix(twin, "ok ")) {
				t.Errorf("twin %v inside = %q, want %q", c.twin, twin, c.wantTwin)
			}
		})
	}
	if checked < 4 {
		t.Errorf("only %d of explain's claims were enforced and checked; want at least 4 on ABI %d", checked, abi)
	}
}
