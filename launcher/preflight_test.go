package launcher

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestPreflightRefusesAFlushedFilterUntilSetupRepairsIt is issue 9 defect 5:
// under systemd User= the server cannot read the ruleset of its netns, so
// the unit's root preflight must, before every (re)start. ccade3b has no
// preflight at all, and its root `run` only checked the chains' policies.
func TestPreflightRefusesAFlushedFilterUntilSetupRepairsIt(t *testing.T) {
	in := binInstance(t)
	in.spec["networkIsolation"] = map[string]any{"enable": true, "outboundAllowCidrs": []string{"198.18.0.0/24"}}
	in.writeSpec()
	t.Cleanup(func() {
		if code, out := in.launcher("teardown", "--config", in.specPath); code != 0 {
			t.Errorf("teardown exit %d:\n%s", code, out)
		}
	})
	if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
		t.Fatalf("setup exit %d:\n%s", code, out)
	}
	if code, out := in.launcher("preflight", "--config", in.specPath); code != 0 {
		t.Fatalf("preflight after setup: exit %d, want 0:\n%s", code, out)
	}
	netns := "opencode-" + in.name
	for _, tamper := range [][]string{
		{"nft", "flush", "ruleset"},
		{"nft", "insert", "rule", "inet", "opencode", "output", "accept"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, tamper...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", tamper, err, out)
		}
		code, out := in.launcher("preflight", "--config", in.specPath)
		if code != ExitInitScript || !strings.Contains(out, "egress filter in "+netns+" is not the planned one") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("preflight after %v: exit %d, want %d and one line naming the filter:\n%s", tamper, code, ExitInitScript, out)
		}
		// Root run refuses the same netns: it never joins a loosened filter.
		if code, out := in.launcher("run", "--config", in.specPath, "--", "/bin/true"); code == 0 {
			t.Errorf("run as root after %v: exit 0, want a refusal:\n%s", tamper, out)
		}
		if code, out := in.launcher("setup", "--config", in.specPath); code != 0 {
			t.Fatalf("setup exit %d:\n%s", code, out)
		}
		if code, out := in.launcher("preflight", "--config", in.specPath); code != 0 {
			t.Errorf("preflight after setup repaired %v: exit %d, want 0:\n%s", tamper, code, out)
		}
	}
}

func TestPreflightRefusesAFailedSetupAndNonRoot(t *testing.T) {
	in := binInstance(t)
	in.set("postInitScript", in.script("post", "exit 2"))
	if code, out := in.launcher("setup", "--config", in.specPath); code != ExitInitScript {
		t.Fatalf("setup exit %d, want %d:\n%s", code, ExitInitScript, out)
	}
	if code, out := in.launcher("preflight", "--config", in.specPath); code != ExitInitScript || !strings.Contains(out, "failed") {
		t.Errorf("preflight after a failed setup: exit %d, want %d:\n%s", code, ExitInitScript, out)
	}
	cmd := exec.Command(launcherBin(t), "preflight", "--config", in.specPath)
	u := lookupTestUser(t, in.user)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitPermission {
		t.Errorf("preflight as the instance user: %v, want exit %d:\n%s", err, ExitPermission, out)
	}
}
