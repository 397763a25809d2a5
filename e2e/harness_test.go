package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// launcherBin is the opencode-launcher built once for the whole package;
// probeBin is the probe program, in the same world-readable directory so that
// instances can be granted it through `path`.
var launcherBin, probeBin, binDir string

// launcherDirBase is launcher.LauncherDirBase; e2e drives the binary only.
const launcherDirBase = "/var/lib/opencode/launcher"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "ocnix-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// The sandboxed child must be able to exec the launcher's probes: keep
		// the directory traversable for the instance users.
		os.Chmod(dir, 0o755)
		binDir = dir
		launcherBin = filepath.Join(dir, "opencode-launcher")
		probeBin = filepath.Join(dir, "probe")
		builds := map[string]string{launcherBin: "github.com/ocnix/ocnix/cmd/opencode-launcher", probeBin: "github.com/ocnix/ocnix/e2e/probe"}
		// OCNIX_E2E_LAUNCHER runs the tests and benchmarks against another
		// build (a baseline commit's, for an A/B of the start-up figures).
		if other := os.Getenv("OCNIX_E2E_LAUNCHER"); other != "" {
			b, err := os.ReadFile(other)
			if err == nil {
				err = os.WriteFile(launcherBin, b, 0o755)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "e2e: OCNIX_E2E_LAUNCHER:", err)
				return 1
			}
			delete(builds, launcherBin)
		}
		for out, pkg := range builds {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: build", pkg+":", err)
				return 1
			}
		}
	}
	var made []string
	for d := launcherDirBase; d != "/var/lib"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err != nil {
			made = append(made, d)
		}
	}
	code := m.Run()
	for _, d := range made {
		os.Remove(d) // only if the tests left it empty
	}
	return code
}

func requireRoot(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t, "to create users, drop privileges and apply Landlock/seccomp as the launcher does", "sudo make test")
}

// opencodeBin is the pinned opencode server installed by scripts/install-deps.sh.
func opencodeBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("OCNIX_OPENCODE_BIN")
	if p == "" {
		p = "/opt/ocnix/opencode-bin"
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Skipf("SKIPPED %s: opencode binary %s missing (%v); run: sudo make deps", t.Name(), p, err)
	}
	return real
}

// instance is one throwaway instance: its own user, project dir, state dir
// and spec file, all removed when the test ends.
type instance struct {
	t        testing.TB
	name     string
	user     string
	base     string
	dir      string
	stateDir string
	specPath string
	spec     map[string]any
	// registered: a cleanup tears the instance down (setup ran once).
	registered bool
	// env is added to the launcher's environment (as systemd would set it).
	env []string
}

func newInstance(t testing.TB, name string, mutate func(in *instance)) *instance {
	t.Helper()
	requireRoot(t)
	base, err := os.MkdirTemp("", "ocnix-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	in := &instance{
		t:        t,
		name:     name,
		user:     "ocnix-t-" + name,
		base:     base,
		dir:      filepath.Join(base, "project"),
		stateDir: filepath.Join(base, "state"),
		specPath: filepath.Join(base, "spec.json"),
	}
	testkit.AddUser(t, in.user)
	// setup keeps the instance's root-owned bookkeeping there.
	t.Cleanup(func() { os.RemoveAll(filepath.Join(launcherDirBase, name)) })
	mustRun(t, "install", "-d", "-o", in.user, "-g", in.user, "-m", "0750", in.dir)
	in.spec = map[string]any{
		"name":      name,
		"user":      in.user,
		"group":     in.user,
		"directory": in.dir,
		"stateDir":  in.stateDir,
		"listen":    map[string]any{"address": "127.0.0.1", "port": testkit.FreePort(t)},
		"command":   []any{"/bin/false"},
		"sandbox":   map[string]any{},
	}
	if mutate != nil {
		mutate(in)
	}
	in.writeSpec()
	// Every setup registers the instance's port in the host's peer guard
	// (inet ocnix, /run/ocnix/listeners.json): take it back whatever the
	// test did, with the spec as the test left it (cleanups run before
	// the base directory goes). Idempotent: nothing set up, nothing to do.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, errs, code := in.launcher(ctx, "teardown"); code != 0 {
			t.Errorf("cleanup: teardown exit %d\n%s%s", code, out, errs)
		}
	})
	return in
}

func (in *instance) writeSpec() { testkit.WriteJSON(in.t, in.specPath, in.spec) }

func (in *instance) port() int { return in.spec["listen"].(map[string]any)["port"].(int) }

// launcher runs opencode-launcher with args and --config appended to the
// subcommand; it returns stdout, stderr and the exit code.
func (in *instance) launcher(ctx context.Context, sub string, args ...string) (string, string, int) {
	in.t.Helper()
	full := append([]string{sub, "--config", in.specPath}, args...)
	cmd := exec.CommandContext(ctx, launcherBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, in.env...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatalf("run launcher %v: %v", full, err)
	}
	return out.String(), errb.String(), code
}

// sandboxed runs argv inside the instance's sandbox via `run -- argv`.
func (in *instance) sandboxed(argv ...string) (string, string, int) {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return in.launcher(ctx, "run", append([]string{"--"}, argv...)...)
}

func (in *instance) setup() {
	in.t.Helper()
	if !in.registered {
		// Setup registers the listen port in the host's shared table (the
		// peer guard), isolated or not: take it out again, even on failure.
		in.registered = true
		in.t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if out, errs, code := in.launcher(ctx, "teardown"); code != 0 {
				in.t.Errorf("cleanup: teardown exit %d\n%s%s", code, out, errs)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, errs, code := in.launcher(ctx, "setup")
	if code != 0 {
		in.t.Fatalf("setup exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// server is a background `run` of the instance.
type server struct {
	cmd  *exec.Cmd
	out  *testkit.LockedBuffer
	done chan struct{}
	err  error
}

func (in *instance) start(prefix ...string) *server {
	in.t.Helper()
	return in.startWith(prefix)
}

// startWith is start with args after run's own (such as "--", a command).
func (in *instance) startWith(prefix []string, args ...string) *server {
	in.t.Helper()
	argv := append(append([]string(nil), prefix...), launcherBin, "run", "--config", in.specPath)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	buf := &testkit.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	s := &server{cmd: cmd, out: buf, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	in.t.Cleanup(func() {
		s.stop(10 * time.Second)
		if in.t.Failed() {
			in.t.Logf("server output:\n%s", buf.String())
		}
	})
	return s
}

// stop sends SIGTERM to the launcher we started (by PID), then SIGKILL.
func (s *server) stop(grace time.Duration) int {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(grace):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return s.cmd.ProcessState.ExitCode()
}

func mustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// httpGet does one request with a per-request timeout: opencode can accept a
// connection before it serves and then never answer it (opencode-facts.md, A).
func httpGet(url string, timeout time.Duration) (int, []byte, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b, err
}

// waitHealthy polls /global/health until it reports healthy.
func waitHealthy(t *testing.T, base string, s *server, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("server exited early (%v); output:\n%s", s.err, s.out.String())
		default:
		}
		code, body, err := httpGet(base+"/global/health", 2*time.Second)
		if err == nil && code == 200 {
			var h map[string]any
			if json.Unmarshal(body, &h) == nil && h["healthy"] == true {
				return h
			}
			last = fmt.Errorf("health answered %s", body)
		} else if err != nil {
			last = err
		} else {
			last = fmt.Errorf("health status %d: %s", code, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s/global/health not healthy after %v: %v; output:\n%s", base, timeout, last, s.out.String())
	return nil
}

// startBg starts argv as a helper process of the test (a server in a test
// namespace, a victim process), waits until it prints "listening" when wait
// is set, and kills it by PID when the test ends.
func startBg(t testing.TB, wait bool, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		pr.Close()
	})
	if wait {
		line := make(chan string, 1)
		go func() {
			buf := make([]byte, 256)
			n, _ := pr.Read(buf)
			line <- string(buf[:n])
			io.Copy(io.Discard, pr)
		}()
		select {
		case l := <-line:
			if !strings.Contains(l, "listening") {
				t.Fatalf("%v: %q", argv, l)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v did not start listening", argv)
		}
	} else {
		go io.Copy(io.Discard, pr)
	}
	return cmd
}

// probe runs the probe program inside the instance's sandbox and returns its
// one-line verdict ("ok …" or an errno name).
func (in *instance) probe(args ...string) string {
	in.t.Helper()
	out, errs, code := in.sandboxed(append([]string{probeBin}, args...)...)
	if code != 0 {
		in.t.Fatalf("probe %v: launcher exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return strings.TrimSpace(out)
}

// bare runs the probe outside any sandbox, as root: the positive twin that
// proves a probe can succeed, so a denial is the sandbox's doing.
func bare(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(probeBin, args...).Output()
	if err != nil {
		t.Fatalf("bare probe %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}
