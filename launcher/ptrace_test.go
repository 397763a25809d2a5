package launcher

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunRefusesAllowedSocketsWhenYamaForbidsTheGate: issue 9 defect 9. With
// kernel.yama.ptrace_scope=2 the supervisor of run as the instance user
// (systemd User=) cannot pidfd_getfd, so every allowed socket would fail;
// run must refuse clearly (exit 69), and as root (CAP_SYS_PTRACE) it works.
// The sysctl is restored. 3 is never tried: it cannot be lowered again.
func TestRunRefusesAllowedSocketsWhenYamaForbidsTheGate(t *testing.T) {
	const knob = "/proc/sys/kernel/yama/ptrace_scope"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skipf("SKIPPED %s: this kernel has no Yama LSM (%v), so kernel.yama.ptrace_scope cannot be set; the decision itself is covered by sandbox's TestGateUsableFollowsYama and TestPtraceScopeIsExplained", t.Name(), err)
	}
	in := binInstance(t)
	sockDir := filepath.Join(in.base, "sock")
	in.mkdir(sockDir, false)
	in.set("sandbox", map[string]any{"unixSockets": map[string]any{"allow": []string{sockDir}}})
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup: exit %d:\n%s", code, out)
	}
	if err := os.WriteFile(knob, []byte("2\n"), 0o644); err != nil {
		t.Fatalf("set %s: %v", knob, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(knob, old, 0o644); err != nil {
			t.Errorf("restore %s to %s: %v", knob, old, err)
		}
	})
	if _, out := in.launcher("status", "--config", in.specPath); !strings.Contains(out, "ptrace_scope=2") {
		t.Errorf("status does not mention ptrace_scope=2:\n%s", out)
	}
	if _, out := in.launcher("explain", "--config", in.specPath); !strings.Contains(out, "ptrace_scope=2") {
		t.Errorf("explain does not mention ptrace_scope=2:\n%s", out)
	}
	cmd := exec.Command(launcherBin(t), "run", "--config", in.specPath, "--", "/bin/true")
	u := lookupTestUser(t, in.user)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitUnavailable || !strings.Contains(string(out), "ptrace_scope=2") {
		t.Errorf("run as the instance user at ptrace_scope=2: %v, want exit %d naming the sysctl:\n%s", err, ExitUnavailable, out)
	}
	if code, out := in.launcher("run", "--config", in.specPath, "--", "/bin/true"); code != 0 {
		t.Errorf("run as root at ptrace_scope=2 (it has CAP_SYS_PTRACE): exit %d:\n%s", code, out)
	}
}
