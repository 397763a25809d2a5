package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unixFixture is a set of sockets served by the test (root) outside the
// instance's paths: one allowed by file, one allowed by directory, and
// denied ones next to them.
type unixFixture struct {
	good, evil, allowedDir, inAllowedDir, otherDir, inOtherDir string
}

func newUnixFixture(t testing.TB, base string) unixFixture {
	t.Helper()
	f := unixFixture{
		// good and evil have equal lengths for the race probe.
		good:       filepath.Join(base, "sock", "good.sock"),
		evil:       filepath.Join(base, "sock", "evil.sock"),
		allowedDir: filepath.Join(base, "alloweddir"),
		otherDir:   filepath.Join(base, "otherdir"),
	}
	f.inAllowedDir = filepath.Join(f.allowedDir, "s.sock")
	f.inOtherDir = filepath.Join(f.otherDir, "s.sock")
	for _, d := range []string{filepath.Dir(f.good), f.allowedDir, f.otherDir} {
		mustRun(t, "install", "-d", "-m", "0755", d)
	}
	for _, s := range []struct{ path, name string }{{f.good, "good"}, {f.evil, "evil"}, {f.inAllowedDir, "dirk"}, {f.inOtherDir, "othr"}} {
		startBg(t, true, probeBin, "serve-unix", s.path, s.name)
	}
	return f
}

func TestUnixSocketAllowList(t *testing.T) {
	var fx unixFixture
	si := newSandboxInstance(t, "unix", func(in *instance) {
		fx = newUnixFixture(t, in.base)
		sb := in.spec["sandbox"].(map[string]any)
		sb["unixSockets"] = map[string]any{"allow": []any{fx.good, fx.allowedDir}}
	})
	// A symlink the instance could plant in its own directory.
	link := filepath.Join(si.dir, "link-to-evil.sock")
	if err := os.Symlink(fx.evil, link); err != nil {
		t.Fatal(err)
	}
	relEvil, _ := filepath.Rel(si.dir, fx.evil)
	relGood, _ := filepath.Rel(si.dir, fx.good)

	tests := []struct {
		name string
		path string
		want string
	}{
		{"AllowedSocketFile", fx.good, "ok"},
		{"OtherSocketDenied", fx.evil, "EACCES"},
		{"SymlinkToDeniedDenied", link, "EACCES"},
		{"RelativeToDeniedDenied", relEvil, "EACCES"},
		{"RelativeToAllowed", relGood, "ok"},
		{"SocketInAllowedDirectory", fx.inAllowedDir, "ok"},
		{"DirectoryEntryDoesNotCoverOtherDir", fx.inOtherDir, "EACCES"},
		{"NonexistentDenied", filepath.Join(fx.otherDir, "nope.sock"), "EACCES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe("connect-unix", tt.path); got != tt.want {
				t.Errorf("connect-unix %s = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	// Positive twin of every denial: outside the sandbox the denied sockets answer.
	for _, p := range []string{fx.evil, fx.inOtherDir} {
		if got := bare(t, "connect-unix", p); got != "ok" {
			t.Errorf("bare connect-unix %s = %q, want ok", p, got)
		}
	}
	t.Run("DenialIsLoggedOnceWithInstanceAndPath", func(t *testing.T) {
		out, errs, _ := si.sandboxed(probeBin, "connect-unix", fx.evil)
		if strings.TrimSpace(out) != "EACCES" {
			t.Fatalf("probe = %q", out)
		}
		want := fmt.Sprintf("instance=%s path=%s", si.name, fx.evil)
		if n := strings.Count(errs, want); n != 1 || !strings.Contains(errs, "connect denied") {
			t.Errorf("stderr has %d lines with %q, want exactly one denial line:\n%s", n, want, errs)
		}
	})
	t.Run("OwnSocketInDirectory", func(t *testing.T) {
		if got := si.probe("serve-unix-and-connect", filepath.Join(si.dir, "own.sock")); got != "ok" {
			t.Errorf("own socket = %q, want ok", got)
		}
	})
}

// TestUnixSocketRace swaps the sockaddr between an allowed and a denied path
// from another thread during connect(). A gate that checks and then lets the
// kernel re-read the address (CONTINUE) leaks; ocnix's must never.
func TestUnixSocketRace(t *testing.T) {
	var fx unixFixture
	si := newSandboxInstance(t, "race", func(in *instance) {
		fx = newUnixFixture(t, in.base)
		sb := in.spec["sandbox"].(map[string]any)
		sb["unixSockets"] = map[string]any{"allow": []any{fx.good}}
	})
	const tries = 3000
	got := si.probe("race", fx.good, fx.evil, strconv.Itoa(tries))
	var good, evil, denied int
	if _, err := fmt.Sscanf(got, "ok good=%d evil=%d denied=%d", &good, &evil, &denied); err != nil {
		t.Fatalf("race probe printed %q", got)
	}
	t.Logf("race: %d tries: good=%d evil=%d denied=%d", tries, good, evil, denied)
	if evil != 0 {
		t.Errorf("a racing thread reached the denied socket %d times", evil)
	}
	if good == 0 {
		t.Errorf("no connect reached the allowed socket: the race test cannot tell a working gate from a closed one")
	}
}

// TestPostgresFromInsideTheSandbox runs psql inside the instance's sandbox
// against a real PostgreSQL that listens only on a private unix socket.
func TestPostgresFromInsideTheSandbox(t *testing.T) {
	requireRoot(t)
	pgbins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(pgbins) == 0 {
		t.Skipf("SKIPPED %s: PostgreSQL server binaries not found; run: sudo make deps", t.Name())
	}
	pgbin := filepath.Dir(pgbins[len(pgbins)-1])
	var sockDir string
	si := newSandboxInstance(t, "pg", func(in *instance) {
		data := filepath.Join(in.base, "pgdata")
		sockDir = filepath.Join(in.base, "pgsock")
		mustRun(t, "install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", data)
		mustRun(t, "install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0755", sockDir)
		mustRun(t, "runuser", "-u", "postgres", "--", filepath.Join(pgbin, "initdb"), "-D", data, "--auth=trust", "-U", "postgres")
		mustRun(t, "runuser", "-u", "postgres", "--", filepath.Join(pgbin, "pg_ctl"), "-D", data, "-w", "-l", filepath.Join(data, "log"),
			"-o", fmt.Sprintf("-k %s -c listen_addresses='' -p 5432", sockDir), "start")
		t.Cleanup(func() {
			exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pgbin, "pg_ctl"), "-D", data, "-m", "immediate", "stop").Run()
		})
		sb := in.spec["sandbox"].(map[string]any)
		sb["unixSockets"] = map[string]any{"allow": []any{filepath.Join(sockDir, ".s.PGSQL.5432")}}
	})
	psql := []string{"psql", "-h", sockDir, "-U", "postgres", "-Atc", "select 40 + 2"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errs, code := si.sandboxed(psql...)
		if code == 0 && strings.TrimSpace(out) == "42" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("psql in the sandbox: exit %d, stdout %q, stderr %s", code, out, errs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The negative: with the socket not allowed, the same psql is refused.
	sb := si.spec["sandbox"].(map[string]any)
	sb["unixSockets"] = map[string]any{"allow": []any{}}
	si.writeSpec()
	out, errs, code := si.sandboxed(psql...)
	if code == 0 || !strings.Contains(errs, "Permission denied") {
		t.Errorf("psql without the socket allowed: exit %d, stdout %q, stderr %s; want a refusal with Permission denied", code, out, errs)
	}
}

// TestUnixAllowEntryInOwnDirCannotBeRedirected: an allow entry that lies in
// the instance's own directories is the instance's to replace. A link planted
// there in one run must not widen the allow-list of the next (found by the
// red team: the root supervisor used to resolve it).
func TestUnixAllowEntryInOwnDirCannotBeRedirected(t *testing.T) {
	var fx unixFixture
	var dirEntry, fileEntry string
	si := newSandboxInstance(t, "redir", func(in *instance) {
		fx = newUnixFixture(t, in.base)
		dirEntry = filepath.Join(in.stateDir, "sockets")
		fileEntry = filepath.Join(in.dir, "db.sock")
		in.spec["sandbox"].(map[string]any)["unixSockets"] = map[string]any{"allow": []any{dirEntry, fileEntry}}
	})
	for _, plant := range [][]string{
		{"/bin/ln", "-s", "/", dirEntry},
		{"/bin/ln", "-s", fx.evil, fileEntry},
	} {
		if out, errs, code := si.sandboxed(plant...); code != 0 {
			t.Fatalf("plant %v: %d %s %s", plant, code, out, errs)
		}
	}
	// The next run, with the links in place.
	for _, p := range []string{fx.evil, fileEntry, filepath.Join(dirEntry, strings.TrimPrefix(fx.evil, "/"))} {
		if got := si.probe("connect-unix", p); got != "EACCES" {
			t.Errorf("connect-unix %s after planting links = %q, want EACCES", p, got)
		}
	}
}
