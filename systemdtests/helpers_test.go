//go:build linux

package systemdtests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// need returns the booted container, or skips loudly when this machine cannot
// run the tier.
func need(t *testing.T) *container {
	t.Helper()
	if skipReason != "" {
		t.Skipf("SKIPPED %s: %s", t.Name(), skipReason)
	}
	if ct == nil {
		t.Fatal("no container (boot failed; see TestMain's output)")
	}
	// Checked before the report is set up: TestUnitsLoadAndStart has already
	// shown the failed units, and nine copies would push it out of CI's view.
	if !started && t.Name() != "TestUnitsLoadAndStart" {
		t.Fatal("the rendered units did not start (TestUnitsLoadAndStart failed), so this scenario cannot run")
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _, _ := ct.run(cmdTimeout, failedUnitsReport)
			t.Logf("%s failed; the container's failed units and the last journal lines of the ocnix units:\n%s", t.Name(), out)
		}
	})
	return ct
}

// failedUnitsReport shows each failed unit's own journal first: with six
// instances starting at once, the last lines of all of them bury the one
// that failed (a CI run showed only the healthy ones).
const failedUnitsReport = `systemctl --no-pager --failed
for u in $(systemctl list-units --failed --plain --no-legend | awk '{print $1}'); do
  echo "=== journal of failed unit $u"
  journalctl --no-pager -o short-precise -n 40 -u "$u"
done
# A unit that failed and was restarted is not "failed" any more; its first failure is
# what matters (a CI run showed only the restarted, healthy start).
for u in $(systemctl list-units --plain --no-legend 'opencode-*.service' | awk '{print $1}'); do
  n=$(systemctl show -p NRestarts --value "$u")
  if [ "${n:-0}" != 0 ]; then
    echo "=== journal of $u, restarted $n times"
    journalctl --no-pager -o short-precise -n 60 -u "$u"
  fi
done
echo "=== last lines of the ocnix units"
journalctl --no-pager -o short-precise -n 40 -u 'opencode-*'`

// must runs script in the container and fails the test unless it exits 0.
func (c *container) must(t *testing.T, script string) string {
	t.Helper()
	out, code, err := c.run(cmdTimeout, script)
	if err != nil || code != 0 {
		t.Fatalf("in the container: %s\nexit %d, err %v\n%s", script, code, err, out)
	}
	return out
}

// mustFail fails the test unless script exits non-zero.
func (c *container) mustFail(t *testing.T, what, script string) string {
	t.Helper()
	out, code, err := c.run(cmdTimeout, script)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", what, script, err, out)
	}
	if code == 0 {
		t.Fatalf("%s: expected a failure, but `%s` succeeded:\n%s", what, script, out)
	}
	return out
}

// eventually polls script until it exits 0: readiness is waited for, never
// assumed after a fixed sleep.
func (c *container) eventually(t *testing.T, what string, timeout time.Duration, script string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, code, err := c.run(cmdTimeout, script)
		if err == nil && code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s: `%s` (exit %d, err %v):\n%s", what, timeout, script, code, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func specOf(name string) string { return "/etc/ocnix/instances/" + name + ".json" }

// probeIn runs the probe inside instance name's sandbox through the launcher
// (`run -- CMD`: exactly the server's Landlock, seccomp, unix-socket gate and
// netns) and returns its verdict: "ok" or an errno name.
func (c *container) probeIn(t *testing.T, name string, args ...string) string {
	t.Helper()
	script := fmt.Sprintf("%s run --config %s -- %s %s", launcher, specOf(name), probe, strings.Join(args, " "))
	out, errOut, code, err := c.runSplit(cmdTimeout, script)
	if err != nil || code != 0 {
		t.Fatalf("probe %v in %s: launcher exit %d, err %v\nstdout: %s\nstderr: %s", args, name, code, err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// probeHost runs the probe as root in the container's own network namespace,
// outside any sandbox: the positive twin that proves a denial is the sandbox's.
func (c *container) probeHost(t *testing.T, args ...string) string {
	t.Helper()
	out := c.must(t, probe+" "+strings.Join(args, " "))
	return strings.TrimSpace(out)
}

func (c *container) allow(t *testing.T, name, what string, args ...string) {
	t.Helper()
	if got := c.probeIn(t, name, args...); got != "ok" {
		t.Errorf("%s: expected ok inside %s, got %q", what, name, got)
	}
}

func (c *container) deny(t *testing.T, name, what string, args ...string) {
	t.Helper()
	if got := c.probeIn(t, name, args...); got == "ok" || got == "" {
		t.Errorf("%s: expected a denial inside %s, got %q", what, name, got)
	}
}

// health asserts that opencode's /global/health answers healthy at port on the
// container's loopback.
func (c *container) health(t *testing.T, port int) {
	t.Helper()
	out := c.eventually(t, fmt.Sprintf("/global/health on 127.0.0.1:%d", port), startTimeout,
		fmt.Sprintf("curl -sf -m 5 http://127.0.0.1:%d/global/health", port))
	if !strings.Contains(strings.ReplaceAll(out, " ", ""), `"healthy":true`) {
		t.Fatalf("health on 127.0.0.1:%d: %s", port, out)
	}
}

func (c *container) mainPID(t *testing.T, unit string) string {
	t.Helper()
	pid := strings.TrimSpace(c.must(t, "systemctl show -P MainPID "+unit))
	if pid == "" || pid == "0" {
		t.Fatalf("%s has no main process", unit)
	}
	return pid
}
