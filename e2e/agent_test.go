package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

func call(id, name string, args map[string]any) testkit.ToolCall {
	a := map[string]any{"_id": id}
	for k, v := range args {
		a[k] = v
	}
	return testkit.ToolCall{Name: name, Args: a}
}

// TestAgentLoopWithTheDefaults drives real opencode through one session with
// a scripted model: the spec is what a user writes (a provider, a model and
// the provider's baseURL), and the defaults must make every tool work or
// fail with an error the model sees, never a prompt that waits for a human.
func TestAgentLoopWithTheDefaults(t *testing.T) {
	bin := opencodeBin(t)
	if _, err := os.Stat("/usr/bin/rg"); err != nil {
		t.Fatalf("ripgrep missing (/usr/bin/rg): run scripts/install-deps.sh")
	}
	fm := testkit.StartFakeModel(t)
	var outside, sock string
	in := newInstance(t, "agent", func(in *instance) {
		in.spec["command"] = []any{bin}
		in.spec["provider"] = "fake"
		in.spec["model"] = "m"
		in.spec["opencodeConfig"] = map[string]any{"provider": map[string]any{"fake": map[string]any{
			"npm": "@ai-sdk/openai-compatible", "options": map[string]any{"baseURL": fm.URL, "apiKey": "none"},
			"models": map[string]any{"m": map[string]any{}},
		}}}
		outside = filepath.Join(in.base, "outside")
		sock = filepath.Join(in.base, "s.sock")
	})
	mustRun(t, "install", "-d", "-m", "0755", outside)
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("OUTSIDE-SECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A unix socket anyone may connect to: only the sandbox stops the agent.
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	os.Chmod(sock, 0o777)
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ul.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()

	hostname, _ := os.ReadFile("/etc/hostname")
	p := in.dir
	fm.Add(
		testkit.Turn{Calls: []testkit.ToolCall{call("c_id", "bash", map[string]any{"command": "id -un; pwd", "description": "who and where"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_write", "write", map[string]any{"filePath": p + "/hello.txt", "content": "hello world\n"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_edit", "edit", map[string]any{"filePath": p + "/hello.txt", "oldString": "hello", "newString": "goodbye"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_read", "read", map[string]any{"filePath": p + "/hello.txt"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_readetc", "read", map[string]any{"filePath": "/etc/hostname"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_readout", "read", map[string]any{"filePath": outside + "/secret.txt"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_catout", "bash", map[string]any{"command": "cat " + outside + "/secret.txt", "description": "outside"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_grep", "grep", map[string]any{"pattern": "goodbye"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_glob", "glob", map[string]any{"pattern": "*.txt"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_sock", "bash", map[string]any{"command": "curl -sS -m 5 --unix-socket " + sock + " http://x/; echo rc=$?", "description": "socket"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_bind", "bash", map[string]any{"command": "curl -sS -m 5 --local-port 7 http://127.0.0.1:" + strconv.Itoa(in.port()) + "/; echo rc=$?", "description": "bind"})}},
		testkit.Turn{Calls: []testkit.ToolCall{call("c_bg", "bash", map[string]any{"command": "(setsid sleep 1000 >/dev/null 2>&1 &); echo started", "description": "background job"})}},
		testkit.Turn{Text: "done"},
	)

	in.setup()
	srv := in.start()
	base := fmt.Sprintf("http://127.0.0.1:%d", in.port())
	waitHealthy(t, base, srv, 90*time.Second)

	var sess struct {
		ID string `json:"id"`
	}
	if code, body := post(t, base+"/session", `{}`, 30*time.Second); code != 200 || json.Unmarshal(body, &sess) != nil || sess.ID == "" {
		t.Fatalf("POST /session: %d %s", code, body)
	}
	// Each tool call takes seconds at most; a permission prompt would hang
	// here until the timeout.
	code, body := post(t, base+"/session/"+sess.ID+"/message", `{"parts":[{"type":"text","text":"do the scripted work"}]}`, 3*time.Minute)
	if code != 200 {
		t.Fatalf("POST message: %d %s", code, body)
	}
	for _, r := range fm.Results() {
		t.Logf("tool result %s (%s): %.300q", r.CallID, r.Tool, r.Content)
	}
	res := func(id string) string {
		r, ok := fm.Result(id)
		if !ok {
			t.Errorf("no tool result for %s came back to the model (results: %+v)", id, fm.Results())
		}
		return r.Content
	}
	if got := res("c_id"); !strings.Contains(got, in.user) || !strings.Contains(got, in.dir) {
		t.Errorf("bash id/pwd = %q, want user %s in %s", got, in.user, in.dir)
	}
	if b, _ := os.ReadFile(filepath.Join(in.dir, "hello.txt")); string(b) != "goodbye world\n" {
		t.Errorf("hello.txt after write+edit = %q (write: %q, edit: %q)", b, res("c_write"), res("c_edit"))
	}
	if got := res("c_read"); !strings.Contains(got, "goodbye world") {
		t.Errorf("read in the project = %q", got)
	}
	if got := res("c_readetc"); !strings.Contains(got, strings.TrimSpace(string(hostname))) {
		t.Errorf("read /etc/hostname (system baseline) = %q, want its content", got)
	}
	for _, id := range []string{"c_readout", "c_catout"} {
		if got := res(id); strings.Contains(got, "OUTSIDE-SECRET") || got == "" {
			t.Errorf("%s: reading outside the grants = %q, want an error", id, got)
		}
	}
	if got := res("c_grep"); !strings.Contains(got, "hello.txt") {
		t.Errorf("grep = %q, want hello.txt", got)
	}
	if got := res("c_glob"); !strings.Contains(got, "hello.txt") {
		t.Errorf("glob = %q, want hello.txt", got)
	}
	if got := res("c_sock"); strings.Contains(got, "rc=0") || !strings.Contains(got, "rc=") {
		t.Errorf("connect to a socket outside the allow-list = %q, want a curl error", got)
	}
	select {
	case <-accepted:
		t.Errorf("the socket outside the allow-list accepted a connection from the agent")
	default:
	}
	if got := res("c_bind"); !strings.Contains(got, "rc=45") {
		t.Errorf("bind to fixed port 7 = %q, want curl's bind error (rc=45)", got)
	}
	if got := res("c_bg"); !strings.Contains(got, "started") {
		t.Errorf("background job = %q", got)
	}
	if fm.Remaining() != 0 {
		t.Errorf("%d scripted turns were never asked for", fm.Remaining())
	}

	// Abort a long command: the message call returns, the command dies.
	fm.Add(testkit.Turn{Calls: []testkit.ToolCall{call("c_long", "bash", map[string]any{"command": "sleep 300", "description": "long", "timeout": 600000})}}, testkit.Turn{Text: "aborted"})
	done := make(chan int, 1)
	go func() {
		c, _ := postNoFatal(base+"/session/"+sess.ID+"/message", `{"parts":[{"type":"text","text":"run the long command"}]}`, 2*time.Minute)
		done <- c
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !userRuns(in.user, "sleep 300") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !userRuns(in.user, "sleep 300") {
		t.Fatalf("the long command never started")
	}
	if code, body := post(t, base+"/session/"+sess.ID+"/abort", `{}`, 30*time.Second); code != 200 {
		t.Errorf("abort: %d %s", code, body)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Errorf("the message call did not return within 60 s of the abort")
	}
	for i := 0; i < 50 && userRuns(in.user, "sleep 300"); i++ {
		time.Sleep(200 * time.Millisecond)
	}
	if userRuns(in.user, "sleep 300") {
		t.Errorf("the aborted command still runs")
	}
	if !userRuns(in.user, "sleep 1000") {
		t.Errorf("the background job is not running before the stop (the check below would prove nothing)")
	}

	// No runtime downloads: nothing was npm-installed.
	for _, d := range []string{"config/opencode/node_modules/@opencode-ai", ".npm", "cache/opencode/packages", "cache/opencode/bin/rg"} {
		if _, err := os.Stat(filepath.Join(in.stateDir, d)); err == nil {
			t.Errorf("%s exists: opencode downloaded at run time", d)
		}
	}
	if strings.Contains(srv.out.String(), "downloading") {
		t.Errorf("server output mentions a download:\n%s", srv.out.String())
	}

	if rc := srv.stop(15 * time.Second); rc != 0 && rc != 143 {
		t.Errorf("server exit %d", rc)
	}
	time.Sleep(500 * time.Millisecond)
	if pids := userPids(in.user); len(pids) > 0 {
		t.Errorf("processes of %s left after the server stopped: %v", in.user, pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func postNoFatal(url, body string, timeout time.Duration) (int, []byte) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b
}

func post(t *testing.T, url, body string, timeout time.Duration) (int, []byte) {
	t.Helper()
	return postNoFatal(url, body, timeout)
}

// userPids lists the processes whose real uid is user's.
func userPids(user string) []int {
	uid := uidOf(user)
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == uid {
				out = append(out, pid)
			}
		}
	}
	return out
}

func userRuns(user, cmdline string) bool {
	for _, pid := range userPids(user) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), cmdline) {
			return true
		}
	}
	return false
}

func uidOf(user string) string {
	b, _ := os.ReadFile("/etc/passwd")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[0] == user {
			return f[2]
		}
	}
	return "-1"
}
