//go:build linux

package systemdtests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// The agent fixture (fixtures/agent.nix) and its fake model. (This file sorts after
// scenarios_test.go: go test runs the files in name order, and TestUnitsLoadAndStart
// must come first.)
const (
	agentPort     = 18795
	agentUser     = "opencode-agent"
	agentDir      = "/srv/agent"
	agentState    = "/var/lib/opencode/instance-state/agent"
	fakeModelAddr = "127.0.0.1:18796" // the provider's baseURL in fixtures/agent.nix
	// Outside every grant of agent, readable by any uid: only Landlock stops it.
	agentOutside = "/srv/agent-outside"
	// A unix socket anyone may connect to, in no allow-list: only the gate stops it.
	agentSock = "/run/ocnix-agent-test.sock"
)

func agentCall(id, name string, args map[string]any) testkit.ToolCall {
	a := map[string]any{"_id": id}
	for k, v := range args {
		a[k] = v
	}
	return testkit.ToolCall{Name: name, Args: a}
}

// TestAgentLoop drives real opencode under the rendered units through one
// session with a scripted model (issue 17): the spec is what a user writes
// (provider, model, the provider's baseURL) and the module's defaults must make
// every tool work, or fail with an error the model sees, never a prompt that
// waits for a human. The e2e twin is e2e's TestAgentLoopWithTheDefaults; this
// one adds the unit's hardening, its cgroup and `systemctl stop`.
func TestAgentLoop(t *testing.T) {
	c := need(t)
	const unit = "opencode-agent.service"
	c.health(t, agentPort)
	if u := strings.TrimSpace(c.must(t, "ps -o user= -p "+c.mainPID(t, unit))); u != agentUser {
		t.Fatalf("%s's main process runs as %q, want %s", unit, u, agentUser)
	}

	bash := func(id, cmd string) testkit.Turn {
		return testkit.Turn{Calls: []testkit.ToolCall{agentCall(id, "bash", map[string]any{"command": cmd, "description": id})}}
	}
	tool := func(id, name string, args map[string]any) testkit.Turn {
		return testkit.Turn{Calls: []testkit.ToolCall{agentCall(id, name, args)}}
	}
	p := agentDir
	script := []testkit.Turn{
		// First message.
		bash("c_id", "id -un; pwd"),
		tool("c_write", "write", map[string]any{"filePath": p + "/hello.txt", "content": "hello world\n"}),
		tool("c_edit", "edit", map[string]any{"filePath": p + "/hello.txt", "oldString": "hello", "newString": "goodbye"}),
		tool("c_read", "read", map[string]any{"filePath": p + "/hello.txt"}),
		tool("c_readetc", "read", map[string]any{"filePath": "/etc/hostname"}),
		tool("c_readout", "read", map[string]any{"filePath": agentOutside + "/secret.txt"}),
		bash("c_catout", "cat "+agentOutside+"/secret.txt"),
		// The path out of opencode's sight (its bash tool checks the paths it can
		// parse): Landlock beneath the permission rules answers.
		bash("c_catvar", "d="+agentOutside+"; cat \"$d/secret.txt\"; echo rc=$?"),
		tool("c_grep", "grep", map[string]any{"pattern": "goodbye"}),
		tool("c_glob", "glob", map[string]any{"pattern": "*.txt"}),
		bash("c_sock", "curl -sS -m 5 --unix-socket "+agentSock+" http://x/; echo rc=$?"),
		bash("c_peer", fmt.Sprintf("curl -sS -m 5 http://127.0.0.1:%d/global/health; echo rc=$?", agentPort)),
		bash("c_bg", "(setsid sleep 1000 >/dev/null 2>&1 &); echo started"),
		{Text: "done"},
		// Second message: a long command, aborted.
		tool("c_long", "bash", map[string]any{"command": "sleep 300", "description": "long", "timeout": 600000}),
		{Text: "aborted"},
	}
	js, err := json.Marshal(script)
	if err != nil {
		t.Fatal(err)
	}

	// The host side: the fake model as a host user (not root, not the instance
	// user), the outside file, the open socket, and the host's ripgrep.
	t.Cleanup(func() {
		c.run(cmdTimeout, "systemctl stop ocnix-fake-model.service ocnix-agent-sock.service ocnix-agent-long.service 2>/dev/null; systemctl reset-failed ocnix-fake-model.service ocnix-agent-sock.service ocnix-agent-long.service 2>/dev/null; rm -rf "+agentOutside+" "+agentSock)
	})
	c.must(t, `set -e
cat >/etc/ocnix-test/agent-script.json <<'EOF'
`+string(js)+`
EOF
chmod 0644 /etc/ocnix-test/agent-script.json
systemd-run --quiet --unit=ocnix-fake-model -p User=nobody `+probe+` serve-fake-model `+fakeModelAddr+` /etc/ocnix-test/agent-script.json
install -d -m 0755 `+agentOutside+`
echo OUTSIDE-SECRET >`+agentOutside+`/secret.txt && chmod 0644 `+agentOutside+`/secret.txt
systemd-run --quiet --unit=ocnix-agent-sock `+probe+` serve-unix `+agentSock+` agent-sock-server`)
	c.eventually(t, "the fake model", startTimeout, "curl -sf -m 5 http://"+fakeModelAddr+"/results")
	c.eventually(t, "the open socket", startTimeout, "test -S "+agentSock)
	// Positive twins, outside the sandbox: the file and the socket are open to
	// the instance user as far as the host's permissions go, and root reaches
	// the server's port.
	c.must(t, "runuser -u "+agentUser+" -- cat "+agentOutside+"/secret.txt >/dev/null")
	if got := c.probeHost(t, "connect-unix", agentSock); got != "ok" {
		t.Fatalf("control: root's connect to %s: %s", agentSock, got)
	}
	c.must(t, fmt.Sprintf("curl -sf -m 5 http://127.0.0.1:%d/global/health >/dev/null", agentPort))
	hostname := strings.TrimSpace(c.must(t, "cat /etc/hostname"))

	var sess struct {
		ID string `json:"id"`
	}
	if code, body := c.agentAPI(t, "/session", `{}`, 30*time.Second); code != 200 || json.Unmarshal([]byte(body), &sess) != nil || sess.ID == "" {
		t.Fatalf("POST /session: %d %s", code, body)
	}
	// Each tool call takes seconds at most; a permission prompt would hang
	// here until curl's timeout.
	code, body := c.agentAPI(t, "/session/"+sess.ID+"/message", `{"parts":[{"type":"text","text":"do the scripted work"}]}`, 3*time.Minute)
	if code != 200 {
		t.Fatalf("POST message: %d %s", code, body)
	}
	rep := c.fakeModelReport(t)
	for _, want := range []string{"bash", "read", "write", "edit", "grep", "glob"} {
		if !strings.Contains(" "+strings.Join(rep.Tools, " ")+" ", " "+want+" ") {
			t.Errorf("opencode did not offer the %s tool to the model (offered: %v)", want, rep.Tools)
		}
	}
	for _, r := range rep.Results {
		t.Logf("tool result %s (%s): %.300q", r.CallID, r.Tool, r.Content)
	}
	res := func(id string) string {
		for _, r := range rep.Results {
			if r.CallID == id {
				return r.Content
			}
		}
		t.Errorf("no tool result for %s came back to the model", id)
		return ""
	}
	if got := res("c_id"); !strings.Contains(got, agentUser) || !strings.Contains(got, agentDir) {
		t.Errorf("bash id/pwd = %q, want user %s in %s", got, agentUser, agentDir)
	}
	if got := strings.TrimSpace(c.must(t, "cat "+p+"/hello.txt; stat -c ' %U' "+p+"/hello.txt")); got != "goodbye world\n "+agentUser {
		t.Errorf("hello.txt after write+edit = %q, want \"goodbye world\" owned by %s (write: %q, edit: %q)", got, agentUser, res("c_write"), res("c_edit"))
	}
	if got := res("c_read"); !strings.Contains(got, "goodbye world") {
		t.Errorf("read in the project = %q", got)
	}
	if got := res("c_readetc"); !strings.Contains(got, hostname) {
		t.Errorf("read /etc/hostname (system baseline) = %q, want %q", got, hostname)
	}
	for _, id := range []string{"c_readout", "c_catout"} {
		if got := res(id); strings.Contains(got, "OUTSIDE-SECRET") || got == "" {
			t.Errorf("%s: reading outside the grants = %q, want an error", id, got)
		}
	}
	if got := res("c_catvar"); strings.Contains(got, "OUTSIDE-SECRET") || !strings.Contains(got, "Permission denied") || !strings.Contains(got, "rc=1") {
		t.Errorf("cat of the outside file through a variable = %q, want Landlock's EACCES (Permission denied, rc=1)", got)
	}
	if got := res("c_grep"); !strings.Contains(got, "hello.txt") {
		t.Errorf("grep = %q, want hello.txt", got)
	}
	if got := res("c_glob"); !strings.Contains(got, "hello.txt") {
		t.Errorf("glob = %q, want hello.txt", got)
	}
	// curl's 7 is "could not connect"; a connection that got through would
	// read the server's name and fail otherwise.
	if got := res("c_sock"); !strings.Contains(got, "rc=7") || strings.Contains(got, "agent-sock-server") {
		t.Errorf("connect to a socket outside the allow-list = %q, want curl's connect error (rc=7)", got)
	}
	// The peer guard: the agent's own server refuses its commands (they hold
	// the server password); root reached it above.
	if got := res("c_peer"); !strings.Contains(got, "rc=7") || strings.Contains(got, "healthy") {
		t.Errorf("the agent's command to its own server's port = %q, want connection refused (rc=7)", got)
	}
	if got := res("c_bg"); !strings.Contains(got, "started") {
		t.Errorf("background job = %q", got)
	}
	if rep.Remaining != 2 {
		t.Errorf("%d scripted turns left after the first message, want 2 (the abort's)", rep.Remaining)
	}

	// Abort a long command: the message call returns, the command dies.
	c.must(t, fmt.Sprintf(`systemd-run --quiet --unit=ocnix-agent-long bash -c "curl -sS -m 150 -o /dev/null -w '%%{http_code}' -H 'Content-Type: application/json' --data-raw '{\"parts\":[{\"type\":\"text\",\"text\":\"run the long command\"}]}' http://127.0.0.1:%d/session/%s/message >/run/ocnix-agent-long.code"`, agentPort, sess.ID))
	const long = "pgrep -u " + agentUser + " -f -x 'sleep 300' >/dev/null"
	c.eventually(t, "the long command runs", time.Minute, long)
	if code, body := c.agentAPI(t, "/session/"+sess.ID+"/abort", `{}`, 30*time.Second); code != 200 {
		t.Errorf("abort: %d %s", code, body)
	}
	c.eventually(t, "the message call returns after the abort", time.Minute, "! systemctl is-active --quiet ocnix-agent-long.service")
	c.eventually(t, "the aborted command is gone", 30*time.Second, "! "+strings.TrimSuffix(long, " >/dev/null"))
	const bg = "pgrep -u " + agentUser + " -f -x 'sleep 1000'"
	c.must(t, bg+" >/dev/null") // else the check after the stop proves nothing

	// No runtime downloads: nothing was npm-installed, no ripgrep fetched.
	for _, d := range []string{"config/opencode/node_modules/@opencode-ai", ".npm", "cache/opencode/packages", "cache/opencode/bin/rg"} {
		c.mustFail(t, "opencode downloaded at run time ("+d+" exists)", "test -e "+agentState+"/"+d)
	}
	c.mustFail(t, "the server's journal mentions a download", "journalctl --no-pager -o cat -u "+unit+" | grep -i downloading")

	// systemctl stop leaves no process of the instance user, the agent's
	// setsid job included.
	c.must(t, "systemctl stop "+unit)
	if out, code, _ := c.run(cmdTimeout, "pgrep -a -u "+agentUser); code != 1 {
		t.Errorf("processes of %s left after systemctl stop (pgrep exit %d):\n%s", agentUser, code, out)
	}
	c.must(t, "systemctl start "+unit)
	c.health(t, agentPort)
}

// agentAPI POSTs body to the agent instance's path from the container's
// loopback, as root (the peer guard refuses the instance user).
func (c *container) agentAPI(t *testing.T, path, body string, timeout time.Duration) (int, string) {
	t.Helper()
	out, code, err := c.run(timeout+30*time.Second, fmt.Sprintf(
		"curl -sS -m %d -w '\\n%%{http_code}' -H 'Content-Type: application/json' --data-binary @- http://127.0.0.1:%d%s <<'EOF'\n%s\nEOF",
		int(timeout.Seconds()), agentPort, path, body))
	if err != nil || code != 0 {
		t.Fatalf("POST %s: curl exit %d, %v\n%s", path, code, err, out)
	}
	i := strings.LastIndex(out, "\n")
	var status int
	fmt.Sscan(out[i+1:], &status)
	return status, out[:i]
}

// fakeModelReport is what the fake model received so far.
func (c *container) fakeModelReport(t *testing.T) testkit.Report {
	t.Helper()
	var rep testkit.Report
	out := c.must(t, "curl -sf -m 10 http://"+fakeModelAddr+"/results")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("the fake model's report: %v\n%s", err, out)
	}
	return rep
}
