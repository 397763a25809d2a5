package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// opencodeBinary finds the real opencode (a Bun single-file executable)
// installed by the CI deps script, or $OCNIX_OPENCODE.
func opencodeBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("OCNIX_OPENCODE"), "/opt/ocnix/opencode/node_modules/opencode-linux-x64/bin/opencode"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s needs the opencode binary (npm opencode-ai): set OCNIX_OPENCODE=/path/to/opencode or install it to /opt/ocnix/opencode (make deps)", t.Name())
	return ""
}

// TestOpencodeServesUnderSandbox runs the real server under the full
// policy: Bun's JIT, threads, /proc reads and the gated connects must
// all keep working.
func TestOpencodeServesUnderSandbox(t *testing.T) {
	bin := opencodeBinary(t)
	f := newFixture(t)
	in := f.in
	in.ExecPaths = []string{filepath.Dir(bin)}
	plan, err := Build(in, DetectCaps())
	must(t, err)

	home := filepath.Join(f.state, "home")
	must(t, os.MkdirAll(filepath.Join(home, ".config", "opencode"), 0o700))
	must(t, os.WriteFile(filepath.Join(home, ".config", "opencode", ".gitignore"), []byte("*\n"), 0o644))
	must(t, filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, f.uid, f.gid)
	}))
	port := strconv.Itoa(in.ListenPort)
	cmd := Command{
		Path: bin,
		Args: []string{bin, "serve", "--pure", "--hostname", "127.0.0.1", "--port", port},
		Env: []string{
			"HOME=" + home, "PATH=/usr/bin:/bin",
			"XDG_DATA_HOME=" + filepath.Join(f.state, "data"),
			"XDG_STATE_HOME=" + filepath.Join(f.state, "xstate"),
			"XDG_CACHE_HOME=" + filepath.Join(f.state, "cache"),
			"OPENCODE_DISABLE_MODELS_FETCH=1", "OPENCODE_DISABLE_AUTOUPDATE=1", "OPENCODE_DISABLE_SHARE=1",
			"OPENCODE_DISABLE_LSP_DOWNLOAD=1", "OPENCODE_DISABLE_DEFAULT_PLUGINS=1",
			"OPENCODE_DISABLE_CLAUDE_CODE=1", "OPENCODE_DISABLE_EXTERNAL_SKILLS=1",
		},
		Dir: in.Directory,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := Run(ctx, plan, cmd, nil)
		done <- result{code: code, err: err}
	}()

	client := &http.Client{Timeout: 2 * time.Second} // readiness race: never wait forever
	var lastErr error
	deadline := time.Now().Add(60 * time.Second)
	healthy := false
	for time.Now().Before(deadline) && !healthy {
		select {
		case r := <-done:
			t.Fatalf("opencode exited early: code %d, err %v", r.code, r.err)
		default:
		}
		for _, path := range []string{"/global/health", "/config"} {
			resp, err := client.Get("http://127.0.0.1:" + port + path)
			if err != nil {
				lastErr = err
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				lastErr = fmt.Errorf("GET %s: %s", path, resp.Status)
				break
			}
			healthy = path == "/config"
		}
		if !healthy {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !healthy {
		t.Fatalf("opencode did not answer /global/health and /config: %v", lastErr)
	}
	shellProbe(t, f, port)
	cancel() // SIGTERM
	r := <-done
	if r.err != nil || (r.code != 0 && r.code != 143) {
		t.Errorf("opencode stopped with code %d, err %v; want 0 or 143", r.code, r.err)
	}
}

// shellProbe runs a shell command through opencode's API. POST
// /session/{id}/shell runs the bash tool directly: no model is called,
// so no API key is needed.
func shellProbe(t *testing.T, f *fixture, port string) {
	t.Helper()
	base := "http://127.0.0.1:" + port
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(base+"/session", "application/json", strings.NewReader("{}"))
	must(t, err)
	var sess struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if err != nil || sess.ID == "" {
		t.Fatalf("POST /session: %s, %v", resp.Status, err)
	}
	body := `{"agent":"build","model":{"providerID":"anthropic","modelID":"claude-sonnet-4-5"},` +
		`"command":"id -u; echo hi > sh-out.txt; ls /tmp; grep ^Seccomp: /proc/self/status"}`
	resp, err = c.Post(base+"/session/"+sess.ID+"/shell", "application/json", strings.NewReader(body))
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(b)
	for _, want := range []string{
		strconv.Itoa(f.uid) + `\n`,                            // runs as the instance user
		`ls: cannot open directory '/tmp': Permission denied`, // /tmp is not granted
		`Seccomp:\t2`, // filter inherited by the shell
	} {
		if !strings.Contains(out, want) {
			t.Errorf("shell output lacks %q:\n%s", want, out)
		}
	}
	if got, err := os.ReadFile(filepath.Join(f.project, "sh-out.txt")); err != nil || string(got) != "hi\n" {
		t.Errorf("shell did not write into the project directory: %q, %v", got, err)
	}
}
