package unixgate

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// gateFixture is a directory tree of sockets, links and servers shared by the scenarios.
type gateFixture struct {
	dir                      string
	good, evil, secret, open *peer
	inner                    *peer
	pol                      Policy
	tcp4, tcp6, closedPort   string
}

func newGateFixture(t *testing.T, owner testUser) *gateFixture {
	t.Helper()
	dir := openTempDir(t)
	mk := func(p string) string {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv, allow, other, own := mk("srv"), mk("allowdir"), mk("otherdir"), mk("own")
	mk("otherdir/sub")
	if err := os.Chown(own, owner.uid, owner.gid); err != nil {
		t.Fatal(err)
	}
	f := &gateFixture{dir: dir}
	f.good = listenUnix(t, filepath.Join(srv, "good.sock"), 0o666)
	f.evil = listenUnix(t, filepath.Join(srv, "evil.sock"), 0o666)
	f.secret = listenUnix(t, filepath.Join(srv, "secret.sock"), 0o600)
	f.open = listenUnix(t, filepath.Join(srv, "open.sock"), 0o666)
	f.inner = listenUnix(t, filepath.Join(allow, "inner.sock"), 0o666)
	listenUnix(t, filepath.Join(other, "x.sock"), 0o666)
	if err := os.WriteFile(filepath.Join(allow, "plain.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(dir, "link-evil"):  "srv/evil.sock",
		filepath.Join(own, "link-evil"):  "../srv/evil.sock",
		filepath.Join(dir, "link-good"):  "srv/good.sock",
		filepath.Join(dir, "link-allow"): "allowdir",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	f.pol = Policy{
		Instance: "web",
		Allow: []string{
			filepath.Join(srv, "good.sock"), filepath.Join(srv, "secret.sock"),
			filepath.Join(srv, "open.sock"), allow, filepath.Join(other, "sub"),
		},
		OwnDirs: []string{own},
	}
	f.tcp4 = listenTCP(t, "tcp4", "127.0.0.1:0").l.Addr().String()
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		f.tcp6 = serveListener(t, l).l.Addr().String()
	}
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.closedPort = closed.Addr().String()
	closed.Close()
	return f
}

func (f *gateFixture) path(p string) string { return filepath.Join(f.dir, p) }

// TestServeDecisions runs every scenario as root and as an unprivileged user, each with
// its exact errno, and each denial with an allowed twin so that deny-all fails the test.
func TestServeDecisions(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	u := newTestUser(t)
	for _, asUser := range []bool{false, true} {
		name, plan := "AsRoot", childPlan{}
		if asUser {
			name, plan = "AsUser", childPlan{UID: u.uid, GID: u.gid}
		}
		t.Run(name, func(t *testing.T) {
			f := newGateFixture(t, u)
			secretWant := "ok"
			if asUser {
				secretWant = "EACCES" // 0600 root socket: the caller's credentials decide
			}
			type pr struct {
				p    probe
				want string
			}
			probes := []pr{
				{probe{Name: "AllowedSocketFile", Kind: "unix", Path: f.path("srv/good.sock")}, "ok"},
				{probe{Name: "DeniedSocket", Kind: "unix", Path: f.path("srv/evil.sock")}, "EACCES"},
				{probe{Name: "SymlinkToDeniedOutsideOwnDir", Kind: "unix", Path: f.path("link-evil")}, "EACCES"},
				{probe{Name: "SymlinkToDeniedInsideOwnDir", Kind: "unix", Path: f.path("own/link-evil")}, "EACCES"},
				{probe{Name: "SymlinkToAllowed", Kind: "unix", Path: f.path("link-good")}, "ok"},
				{probe{Name: "SymlinkedDirToAllowedDir", Kind: "unix", Path: f.path("link-allow/inner.sock")}, "ok"},
				{probe{Name: "RelativeDenied", Kind: "unix", Chdir: f.path("srv"), Path: "evil.sock"}, "EACCES"},
				{probe{Name: "RelativeAllowed", Kind: "unix", Path: "good.sock"}, "ok"},
				{probe{Name: "RelativeDotDotDenied", Kind: "unix", Chdir: f.path("own"), Path: "../srv/evil.sock"}, "EACCES"},
				{probe{Name: "RelativeDotDotAllowed", Kind: "unix", Path: "../allowdir/inner.sock"}, "ok"},
				{probe{Name: "DirEntryCoversSocket", Kind: "unix", Chdir: "/", Path: f.path("allowdir/inner.sock")}, "ok"},
				{probe{Name: "DirEntryNotCovering", Kind: "unix", Path: f.path("otherdir/x.sock")}, "EACCES"},
				{probe{Name: "OwnDirSocket", Kind: "own", Path: f.path("own/mine.sock")}, "ok"},
				{probe{Name: "OwnDirDatagramSocket", Kind: "own", Type: 2, Path: f.path("own/mine.dgram")}, "ok"},
				{probe{Name: "NonexistentIsEACCES", Kind: "unix", Path: f.path("srv/missing.sock")}, "EACCES"},
				{probe{Name: "NonexistentInOwnDirIsEACCES", Kind: "unix", Path: f.path("own/missing.sock")}, "EACCES"},
				{probe{Name: "NotASocketIsEACCES", Kind: "unix", Path: f.path("allowdir/plain.txt")}, "EACCES"},
				{probe{Name: "AbstractIsEACCES", Kind: "abstract", Path: "ocnix-unixgate-test"}, "EACCES"},
				{probe{Name: "RootOnlySocket", Kind: "unix", Path: f.path("srv/secret.sock")}, secretWant},
				{probe{Name: "WorldWritableSocket", Kind: "unix", Path: f.path("srv/open.sock")}, "ok"},
				{probe{Name: "TCP4Blocking", Kind: "tcp", Path: f.tcp4}, "ok"},
				{probe{Name: "TCP4NonBlocking", Kind: "tcpNonblock", Path: f.tcp4}, "EINPROGRESS/ok"},
				{probe{Name: "TCPClosedPortBlocking", Kind: "tcp", Path: f.closedPort}, "ECONNREFUSED"},
				{probe{Name: "TCPClosedPortNonBlocking", Kind: "tcpNonblock", Path: f.closedPort}, "EINPROGRESS/ECONNREFUSED"},
				{probe{Name: "BadFDIsEBADF", Kind: "badfd", Path: f.path("srv/good.sock")}, "EBADF"},
				{probe{Name: "BadPointerIsEFAULT", Kind: "badptr"}, "EFAULT"},
				{probe{Name: "IoUringIsDenied", Kind: "iouring"}, "EPERM"},
				{probe{Name: "OtherSyscallIsENOSYS", Kind: "getpgid"}, "ENOSYS"},
				{probe{Name: "NotASocketFDDeniedPathIsENOTSOCK", Kind: "notsock", Path: f.path("srv/evil.sock")}, "ENOTSOCK"},
				{probe{Name: "NotASocketFDAllowedPathIsENOTSOCK", Kind: "notsock", Path: f.path("srv/good.sock")}, "ENOTSOCK"},
				{probe{Name: "UDPConnect", Kind: "udp", Path: f.tcp4}, "ok"},
				// Last: the process stays non-dumpable.
				{probe{Name: "NonDumpableCallerAllowed", Kind: "nodump", Path: f.path("srv/good.sock")}, "ok"},
				{probe{Name: "NonDumpableCallerRelativeDenied", Kind: "unix", Chdir: f.path("srv"), Path: "evil.sock"}, "EACCES"},
			}
			if f.tcp6 != "" {
				probes = append(probes, pr{probe{Name: "TCP6Blocking", Kind: "tcp", Path: f.tcp6}, "ok"})
			} else {
				t.Log("no IPv6 loopback here: TCP6Blocking not run")
			}
			want := map[string]string{}
			for _, p := range probes {
				plan.Probes = append(plan.Probes, p.p)
				want[p.p.Name] = p.want
			}
			run := runChild(t, plan, f.pol, nil)
			if run.serveErr != nil {
				t.Errorf("Serve returned %v after the child exited, want nil", run.serveErr)
			}
			if diff := cmp.Diff(want, run.res.Results); diff != "" {
				t.Errorf("errno per scenario (-want +got):\n%s", diff)
			}
			if n, _ := f.evil.accepted(); n != 0 {
				t.Errorf("denied server accepted %d connections, want 0", n)
			}
			if n, _ := f.good.accepted(); n != 4 {
				t.Errorf("allowed server accepted %d connections, want 4", n)
			}
			wantUID := uint32(0)
			if asUser {
				wantUID = uint32(u.uid)
			}
			if _, uids := f.open.accepted(); !cmp.Equal(uids, []uint32{wantUID}) {
				t.Errorf("server saw SO_PEERCRED uids %v, want [%d] (the caller's, not the supervisor's)", uids, wantUID)
			}
			threadsAreSupervisor(t)
			// One log line per denial by the gate, naming the instance and the
			// path: a warning for a policy denial, debug for a missing socket.
			lines := strings.Count(run.log, "connect denied")
			if lines != 9 {
				t.Errorf("got %d denial log lines, want 9:\n%s", lines, run.log)
			}
			if n := strings.Count(run.log, "level=DEBUG msg=\"unixgate: connect to a missing socket\""); n != 2 {
				t.Errorf("got %d debug lines for missing sockets, want 2:\n%s", n, run.log)
			}
			for _, p := range []string{f.path("srv/evil.sock"), f.path("link-evil"), "evil.sock", f.path("srv/missing.sock"), "@ocnix-unixgate-test"} {
				if !strings.Contains(run.log, "instance=web path="+p+" ") {
					t.Errorf("log lacks a line with instance=web path=%s:\n%s", p, run.log)
				}
			}
		})
	}
}

// threadsAreSupervisor checks that after Serve returned no thread of this process still
// acts as a caller: each was restored or retired.
func threadsAreSupervisor(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var bad []string
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, st := range tasks {
			b, err := os.ReadFile(st)
			if err != nil {
				continue // the thread exited meanwhile
			}
			for _, line := range strings.Split(string(b), "\n") {
				if (strings.HasPrefix(line, "Uid:") || strings.HasPrefix(line, "Gid:")) &&
					strings.Join(strings.Fields(line)[1:], " ") != "0 0 0 0" {
					bad = append(bad, st+": "+line)
				}
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("threads still act as a caller after Serve returned:\n%s", strings.Join(bad, "\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeSwitchesIdentityPerCaller alternates connects from a root thread and a thread
// of the same process that acts as a test user: each connect must be made as its own
// caller, whatever identity the supervisor's thread held for the previous one.
func TestServeSwitchesIdentityPerCaller(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	u := newTestUser(t)
	dir := openTempDir(t)
	secret := filepath.Join(dir, "secret.sock")
	listenUnix(t, secret, 0o600)
	openSock := filepath.Join(dir, "open.sock")
	open := listenUnix(t, openSock, 0o666)
	pol := Policy{Instance: "mixed", Allow: []string{secret, openSock}}
	plan := childPlan{Probes: []probe{{Name: "mixed", Kind: "mixedCreds", Path: secret, Evil: openSock, UID: u.uid, GID: u.gid}}}
	run := runChild(t, plan, pol, nil)
	want := map[string]string{
		"UserSecret": "EACCES", "RootSecret": "ok", "UserOpen": "ok", "RootOpen": "ok",
		"UserSecretAgain": "EACCES", "UserOpenAgain": "ok",
	}
	if diff := cmp.Diff(want, run.res.Results); diff != "" {
		t.Errorf("errno per connect (-want +got):\n%s", diff)
	}
	uid := uint32(u.uid)
	if _, uids := open.accepted(); !cmp.Equal(uids, []uint32{uid, 0, uid}) {
		t.Errorf("server saw SO_PEERCRED uids %v, want [%d 0 %d]", uids, uid, uid)
	}
	threadsAreSupervisor(t)
}

// TestNscdProbeIsDeniedQuietly: glibc connects to nscd before every user or
// host lookup. On NixOS nscd runs, so the gate denies a live socket each
// time; that must be a debug line, not a warning per `ls -l`. The twin: a
// denied live socket elsewhere still warns. ccade3b warned for both.
func TestNscdProbeIsDeniedQuietly(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	if _, err := os.Lstat("/run/nscd"); err == nil {
		t.Skipf("SKIPPED %s: /run/nscd exists on this host (a real nscd?); the test makes its own and will not touch it", t.Name())
	}
	if err := os.Mkdir("/run/nscd", 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll("/run/nscd") })
	nscd := listenUnix(t, "/run/nscd/socket", 0o666)
	dir := openTempDir(t)
	evil := listenUnix(t, filepath.Join(dir, "evil.sock"), 0o666)
	plan := childPlan{Probes: []probe{
		{Name: "nscd", Kind: "unix", Path: "/run/nscd/socket"},
		{Name: "evil", Kind: "unix", Path: filepath.Join(dir, "evil.sock")},
	}}
	run := runChild(t, plan, Policy{Instance: "web", OwnDirs: []string{filepath.Join(dir, "own")}}, nil)
	if got := run.res.Results; got["nscd"] != "EACCES" || got["evil"] != "EACCES" {
		t.Fatalf("results %v, want both EACCES", got)
	}
	if n, _ := nscd.accepted(); n != 0 {
		t.Errorf("nscd accepted %d connections through the gate", n)
	}
	if n, _ := evil.accepted(); n != 0 {
		t.Errorf("evil accepted %d connections through the gate", n)
	}
	for _, line := range strings.Split(run.log, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "/run/nscd/socket") {
			t.Errorf("the nscd probe logged a warning: %s", line)
		}
	}
	if !strings.Contains(run.log, "level=DEBUG") || !strings.Contains(run.log, "path=/run/nscd/socket") {
		t.Errorf("no debug line for the nscd probe:\n%s", run.log)
	}
	if !strings.Contains(run.log, "level=WARN msg=\"unixgate: connect denied\" instance=web path="+filepath.Join(dir, "evil.sock")) {
		t.Errorf("the denied non-nscd socket did not warn:\n%s", run.log)
	}
}
