package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// asInstanceUser runs the launcher the way the NixOS unit does: already the
// instance user (systemd User=), with no_new_privs and no capabilities, and
// optionally inside the instance netns (systemd NetworkNamespacePath=).
func (in *instance) asInstanceUser(netns string, args ...string) (string, string, int) {
	in.t.Helper()
	argv := []string{"setpriv", "--reuid=" + in.user, "--regid=" + in.user, "--init-groups", "--no-new-privs",
		"--inh-caps=-all", "--bounding-set=-all", launcherBin}
	argv = append(argv, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatalf("%v: %v", argv, err)
	}
	return strings.TrimSpace(out.String()), errb.String(), code
}

// TestRunAsInstanceUser covers the production path under systemd: the
// launcher starts as the instance user without capabilities, so the
// supervisor is unprivileged and connects on the caller's behalf with its
// own (identical) credentials.
func TestRunAsInstanceUser(t *testing.T) {
	var fx unixFixture
	si := newSandboxInstance(t, "nonroot", func(in *instance) {
		fx = newUnixFixture(t, in.base)
		in.spec["sandbox"].(map[string]any)["unixSockets"] = map[string]any{"allow": []any{fx.good}}
	})
	hostPort := testkit.FreePort(t)
	startBg(t, true, probeBin, "serve-tcp", fmt.Sprintf("127.0.0.1:%d", hostPort))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"AllowedSocket", []string{"connect-unix", fx.good}, "ok"},
		{"DeniedSocket", []string{"connect-unix", fx.evil}, "EACCES"},
		{"TCPOnBehalf", []string{"connect-tcp", fmt.Sprintf("127.0.0.1:%d", hostPort)}, "ok"},
		{"WriteDirectory", []string{"write", filepath.Join(si.dir, "nr")}, "ok"},
		{"ReadOutsideDenied", []string{"read", filepath.Join(si.outside, "secret")}, "EACCES"},
		{"Ptrace", []string{"ptrace", "1"}, "EPERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := si.asInstanceUser("", append([]string{"run", "--config", si.specPath, "--", probeBin}, tt.args...)...)
			if code != 0 || out != tt.want {
				t.Errorf("as instance user, probe %v = %q (exit %d), want %q\nstderr: %s", tt.args, out, code, tt.want, errs)
			}
		})
	}
	t.Run("WrongUserIsRefused", func(t *testing.T) {
		cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", launcherBin, "run", "--config", si.specPath, "--", "/bin/true")
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 77 || !strings.Contains(string(out), si.user) {
			t.Errorf("run as nobody: %v, output %s; want exit 77 naming %s", err, out, si.user)
		}
	})
}

// TestIsolatedRunAsInstanceUser: under systemd the unit is placed in the netns
// by NetworkNamespacePath=; the launcher verifies it and refuses otherwise.
func TestIsolatedRunAsInstanceUser(t *testing.T) {
	inet := newTestInternet(t)
	si := newIsolatedInstance(t, "nrnet", []string{inet.allowedCIDR}, nil)
	ns := "opencode-" + si.name
	out, errs, code := si.asInstanceUser(ns, "run", "--config", si.specPath, "--", probeBin, "connect-tcp", inet.allowed+":7001")
	if code != 0 || out != "ok" {
		t.Errorf("in the netns as the instance user: %q exit %d: %s", out, code, errs)
	}
	out, errs, code = si.asInstanceUser(ns, "run", "--config", si.specPath, "--", probeBin, "connect-tcp", inet.blocked+":7001")
	if code != 0 || out != "ECONNREFUSED" {
		t.Errorf("blocked host from the netns as the instance user: %q exit %d: %s", out, code, errs)
	}
	// Outside the netns: fail closed, nothing runs.
	out, errs, code = si.asInstanceUser("", "run", "--config", si.specPath, "--", probeBin, "whoami")
	if code != 77 || out != "" || !strings.Contains(errs, "NetworkNamespacePath") {
		t.Errorf("outside the netns as the instance user: %q exit %d: %s; want exit 77 and nothing run", out, code, errs)
	}
}

// TestOpencodeAsInstanceUser serves the real opencode with the launcher
// started as the instance user, as the NixOS unit does.
func TestOpencodeAsInstanceUser(t *testing.T) {
	bin := opencodeBin(t)
	in := newInstance(t, "ocuser", func(in *instance) { in.spec["command"] = []any{bin} })
	in.setup()
	srv := in.start("setpriv", "--reuid="+in.user, "--regid="+in.user, "--init-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all")
	base := fmt.Sprintf("http://127.0.0.1:%d", in.port())
	waitHealthy(t, base, srv, 90*time.Second)
	if status, body, err := httpGet(base+"/config", 20*time.Second); err != nil || status != 200 || !strings.Contains(string(body), `"share":"disabled"`) {
		t.Errorf("GET /config as instance user: %d %v %s", status, err, body)
	}
	if rc := srv.stop(15 * time.Second); rc != 0 && rc != 143 {
		t.Errorf("exit status %d after SIGTERM, want 0 or 143", rc)
	}
}
