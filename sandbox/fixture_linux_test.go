package sandbox

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/ocnix/ocnix/internal/testkit/probe"
	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t, "it creates users and applies Landlock and seccomp in a child", "sudo go test ./sandbox/...")
}

func requireLandlockABI(t testing.TB, n int) {
	t.Helper()
	if got := DetectCaps().LandlockABI; got < n {
		t.Skipf("%s needs Landlock ABI >= %d, this kernel has %d", t.Name(), n, got)
	}
}

// fixture is a throwaway instance: a system user, its directories, and
// the test binary copied where that user can execute it.
type fixture struct {
	user     testkit.User
	uid, gid int
	base     string
	probe    string // the test binary, as the target program
	project  string // Directory
	state    string // StateDir
	rw2      string // ReadWritePaths
	ro       string // ReadOnlyPaths
	roFile   string
	outside  string // world-readable file in no allowed path
	sockDir  string
	allowed  string // allowed socket (listening)
	denied   string // denied socket (listening)
	in       Input
}

func randName(n int) string { return testkit.RandHex(n) }

// newUser creates a system user named ocnix-t-<random> with its own
// group and removes it when the test ends.
func newUser(t testing.TB) testkit.User { return testkit.AddUser(t, "ocnix-t-"+randName(4)) }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	requireRoot(t)
	f := &fixture{user: newUser(t)}
	f.uid, f.gid = f.user.UID, f.user.GID

	base, err := os.MkdirTemp("", "ocnix-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	f.base = base
	must(t, os.Chmod(base, 0o755))

	mkdir := func(name string, owned bool) string {
		p := filepath.Join(base, name)
		must(t, os.MkdirAll(p, 0o755))
		if owned {
			must(t, os.Chown(p, f.uid, f.gid))
			must(t, os.Chmod(p, 0o700))
		}
		return p
	}
	f.project = mkdir("project", true)
	f.state = mkdir("state", true)
	must(t, os.Mkdir(filepath.Join(f.state, "tmp"), 0o700))
	must(t, os.Chown(filepath.Join(f.state, "tmp"), f.uid, f.gid))
	f.rw2 = mkdir("rw2", true)
	f.ro = mkdir("ro", false)
	f.roFile = filepath.Join(f.ro, "ro.txt")
	must(t, os.WriteFile(f.roFile, []byte("read me"), 0o666)) // world-writable: only Landlock stops writes
	outside := mkdir("outside", false)
	f.outside = filepath.Join(outside, "secret.txt")
	must(t, os.WriteFile(f.outside, []byte("secret"), 0o644))
	f.sockDir = mkdir("sock", false)
	f.allowed = f.listen(t, "allowed.sock")
	f.denied = f.listen(t, "denied.sock")

	bin := mkdir("bin", false)
	f.probe = filepath.Join(bin, "probe")
	copyFile(t, "/proc/self/exe", f.probe, 0o755)

	f.in = Input{
		Instance:       "t-" + randName(3),
		User:           f.user.Username,
		Group:          f.user.Username,
		Directory:      f.project,
		StateDir:       f.state,
		ReadWritePaths: []string{f.rw2},
		ReadOnlyPaths:  []string{f.ro},
		ExecPaths:      []string{f.probe},
		UnixSockets:    []string{f.allowed},
		ListenPort:     testkit.FreePort(t),
	}
	return f
}

// listen starts a unix server that accepts and closes connections.
func (f *fixture) listen(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(f.sockDir, name)
	testkit.ServeUnix(t, p)
	return p
}

// run runs the probe binary in the sandbox built from in and returns
// its exit code (0, an errno number, or 128+signal).
func (f *fixture) run(t *testing.T, in Input, args ...string) int {
	t.Helper()
	plan, err := Build(in, DetectCaps())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return f.runPlan(t, plan, in, args...)
}

// runPlan is run with a plan built elsewhere (say for another ABI).
func (f *fixture) runPlan(t *testing.T, plan Plan, in Input, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := Command{
		Path: f.probe,
		Args: append([]string{f.probe}, args...),
		Env:  []string{probeEnv + "=1", "PATH=/usr/bin:/bin"},
		Dir:  in.Directory,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	code, err := Run(ctx, plan, cmd, log)
	if err != nil {
		t.Fatalf("Run %v: %v", args, err)
	}
	return code
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	must(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	must(t, err)
	_, err = io.Copy(dst, src)
	must(t, err)
	must(t, dst.Close())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// errnoName names an exit code for failure messages.
func errnoName(code int) string {
	switch {
	case code == 0:
		return "success"
	case code == probe.ExitOther:
		return "other error (see stderr)"
	case code > 128 && code < 128+65:
		return "killed by " + unix.SignalName(unix.Signal(code-128))
	case code < probe.ExitOther:
		return unix.ErrnoName(unix.Errno(code))
	}
	return strconv.Itoa(code)
}
