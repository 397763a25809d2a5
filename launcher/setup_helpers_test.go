package launcher

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/internal/logging"
	"github.com/ocnix/ocnix/internal/testkit"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testkit.RequireRoot(t, "to create a test user, chown the state dir and run scripts as that user", "sudo -E go test ./launcher/ -run Setup")
}

// testSetup is a setup whose init scripts run directly as the instance user
// (plainScriptCmd), without the sandbox and without the network, so that
// setup's own logic is tested whether or not `run` is available. The
// sandboxed path is tested through the binary in setup_bin_test.go.
func testSetup(s *Spec, specPath, lockDir string, out io.Writer) (*setup, error) {
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return nil, err
	}
	log := logging.New(out, s.Name, slog.LevelDebug)
	h := testApplier(specPath, lockDir, out)
	h.log = log
	return &setup{plan: p, sys: h, log: log}, nil
}

// testApplier is the host applier with plainScriptCmd and no network.
func testApplier(specPath, lockDir string, out io.Writer) *hostApplier {
	h := newHostApplier(specPath, logging.New(out, "test", slog.LevelDebug), out)
	h.lockDir = lockDir
	h.scriptCmd = plainScriptCmd
	h.net = nil
	return h
}

// testConfigJSON is the opencode.json setup writes for the spec at path.
func testConfigJSON(t *testing.T, path string) []byte {
	t.Helper()
	s, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPlan(s, detectHost(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Setup.configFile()
	if err != nil {
		t.Fatal(err)
	}
	return f.Content
}

// plainScriptCmd runs script as the instance user with the instance's
// environment (environmentFile included), HOME=stateDir and cwd=directory:
// what run -- SCRIPT does minus netns, Landlock and seccomp.
func plainScriptCmd(p *Plan, _ string, script string) (*exec.Cmd, error) {
	id, err := lookupIdentity(p.User, p.Group)
	if err != nil {
		return nil, err
	}
	env := p.Env
	if p.EnvironmentFile != "" {
		vars, err := envfile.Read(p.EnvironmentFile)
		if err != nil {
			return nil, err
		}
		if env, err = withEnvFile(env, vars, p.EnvironmentFile); err != nil {
			return nil, err
		}
	}
	groups := make([]uint32, len(id.groups))
	for i, g := range id.groups {
		groups[i] = uint32(g)
	}
	cmd := exec.Command(script)
	cmd.Env = environ(env)
	cmd.Dir = p.Directory
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: groups}}
	return cmd, nil
}

// testInstance is a throwaway instance: its own user, project dir, state
// dir, scripts and spec, all removed when the test ends.
type testInstance struct {
	t        *testing.T
	name     string
	user     string
	base     string
	dir      string
	stateDir string
	specPath string
	lockDir  string
	spec     map[string]any
}

func newTestInstance(t *testing.T) *testInstance {
	t.Helper()
	requireRoot(t)
	short := testkit.RandHex(3)
	in := &testInstance{t: t, name: "t" + short, user: "ocnix-t-" + short}
	testkit.AddUser(t, in.user)
	t.Cleanup(func() { os.RemoveAll(privateDirFor(in.name)) })
	in.base = t.TempDir()
	// The instance user must traverse to its dirs; t.TempDir makes them 0700.
	for _, d := range []string{filepath.Dir(in.base), in.base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in.dir = filepath.Join(in.base, "project")
	in.mkdir(in.dir, true)
	in.mkdir(filepath.Join(in.base, "state"), false)
	in.mkdir(filepath.Join(in.base, "scripts"), false)
	in.stateDir = filepath.Join(in.base, "state", in.name)
	in.lockDir = t.TempDir()
	in.specPath = filepath.Join(in.base, "spec.json")
	in.spec = map[string]any{
		"name":      in.name,
		"user":      in.user,
		"group":     in.user,
		"directory": in.dir,
		"stateDir":  in.stateDir,
		"command":   []string{"/bin/true"},
	}
	in.writeSpec()
	return in
}

func (in *testInstance) mkdir(p string, userOwned bool) {
	in.t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		in.t.Fatal(err)
	}
	if userOwned {
		if out, err := exec.Command("chown", in.user+":"+in.user, p).CombinedOutput(); err != nil {
			in.t.Fatalf("chown %s: %v: %s", p, err, out)
		}
	}
}

func (in *testInstance) set(key string, v any) {
	in.spec[key] = v
	in.writeSpec()
}

func (in *testInstance) writeSpec() {
	in.t.Helper()
	testkit.WriteJSON(in.t, in.specPath, in.spec)
}

// script writes an executable shell script (root-owned, 0755) and returns its path.
func (in *testInstance) script(name, body string) string {
	in.t.Helper()
	return testkit.WriteScript(in.t, filepath.Join(in.base, "scripts", name), body)
}

// setup runs setup in-process and returns its error and everything it logged.
func (in *testInstance) setup(rerun bool) (string, error) {
	in.t.Helper()
	s, err := loadFile(in.specPath)
	if err != nil {
		in.t.Fatalf("load spec: %v", err)
	}
	var out testkit.LockedBuffer
	st, err := testSetup(s, in.specPath, in.lockDir, &out)
	if err != nil {
		in.t.Fatalf("plan: %v", err)
	}
	st.rerunInit = rerun
	err = st.run(context.Background())
	return out.String(), err
}

func (in *testInstance) mustSetup(rerun bool) string {
	in.t.Helper()
	out, err := in.setup(rerun)
	if err != nil {
		in.t.Fatalf("setup: %v\nlog:\n%s", err, out)
	}
	return out
}

func (in *testInstance) read(p string) string {
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		in.t.Fatal(err)
	}
	return string(b)
}
