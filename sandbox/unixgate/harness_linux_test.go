package unixgate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if plan := os.Getenv(childEnv); plan != "" {
		childMain(plan)
	}
	os.Exit(m.Run())
}

func parseHostPort(s string) ([]byte, int) {
	ap := netip.MustParseAddrPort(s)
	if ap.Addr().Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)...), unix.AF_INET
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet6)...), unix.AF_INET6
}

// requireRoot skips privileged tests loudly.
func requireRoot(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t, "pidfd_getfd of a child, credential switching, a test user", "sudo -E go test ./sandbox/unixgate/")
}

// requireUserNotif skips when the kernel lacks what Serve needs: seccomp user notification
// and PIDFD_THREAD (Linux 6.9).
func requireUserNotif(t testing.TB) {
	t.Helper()
	fd, err := unix.PidfdOpen(unix.Gettid(), unix.PIDFD_THREAD)
	if err != nil {
		t.Skipf("%s needs pidfd_open(PIDFD_THREAD) (Linux 6.9+): %v", t.Name(), err)
	}
	unix.Close(fd)
}

// testUser is a throw-away system user, removed when the test ends.
type testUser struct{ uid, gid int }

var userSeq int

func newTestUser(t testing.TB) testUser {
	t.Helper()
	userSeq++
	u := testkit.AddUser(t, fmt.Sprintf("ocnix-t-gate%d-%d", os.Getpid()%100000, userSeq))
	return testUser{uid: u.UID, gid: u.GID}
}

// openTempDir is t.TempDir made traversable for the test user: testing creates both it
// and its parent 0700.
func openTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// peer is a unix or tcp listener in the test process that accepts and closes at once,
// counting accepts and recording the peer uid of each.
type peer struct {
	l     net.Listener
	mu    sync.Mutex
	count int
	uids  []uint32
}

func listenUnix(t testing.TB, path string, mode os.FileMode) *peer {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return serveListener(t, l)
}

func listenTCP(t testing.TB, network, addr string) *peer {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveListener(t, l)
}

func serveListener(t testing.TB, l net.Listener) *peer {
	s := &peer{l: l}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var uid uint32 = 1<<32 - 1
			if uc, ok := c.(*net.UnixConn); ok {
				if rc, err := uc.SyscallConn(); err == nil {
					_ = rc.Control(func(fd uintptr) {
						if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
							uid = cred.Uid
						}
					})
				}
			}
			s.mu.Lock()
			s.count++
			s.uids = append(s.uids, uid)
			s.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return s
}

func (s *peer) accepted() (int, []uint32) {
	// Accepts race the child's exit by a hair; the child only reports after connect
	// returned, so the connection is queued and the accept loop will see it.
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, append([]uint32(nil), s.uids...)
}

// gateRun is the outcome of one child run under Serve.
type gateRun struct {
	res      childResult
	serveErr error
	log      string
}

// childProc is a started child and, unless it runs bare, its listener fd.
type childProc struct {
	cmd            *exec.Cmd
	pid            int
	nfd            int // -1 for a bare child
	stdout, stderr *bytes.Buffer
	waited         chan error
}

// startChild starts the child with plan and receives its listener. The child is killed
// by PID when the test ends, and the listener closed.
func startChild(t testing.TB, plan childPlan) *childProc {
	t.Helper()
	planJSON, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	childEnd := os.NewFile(uintptr(pair[1]), "listener-pair")
	defer unix.Close(pair[0])

	// PR_SET_PDEATHSIG fires when the forking thread exits, and a thread can exit when a
	// goroutine ends locked (Serve retires a thread whose credentials it cannot restore).
	// Fork from a thread that stays ours until the test ends, as sandbox.Run must.
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	c := &childProc{nfd: -1, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, waited: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(planJSON))
	c.cmd.ExtraFiles = []*os.File{childEnd}
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childEnd.Close()
	c.pid = c.cmd.Process.Pid
	go func() { c.waited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		// By PID, even if the test failed half-way; harmless once it was reaped.
		_ = c.cmd.Process.Kill()
	})
	if plan.NoFilter {
		return c
	}
	nfd, err := recvListener(pair[0], 10*time.Second)
	if err != nil {
		_ = c.cmd.Process.Kill()
		<-c.waited
		t.Fatalf("receive listener: %v; child stderr: %s", err, c.stderr.String())
	}
	c.nfd = nfd
	t.Cleanup(func() { unix.Close(nfd) })
	return c
}

// wait waits for the child to exit successfully, killing it after timeout.
func (c *childProc) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-c.waited:
		if err != nil {
			t.Fatalf("child: %v; stderr: %s", err, c.stderr.String())
		}
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.waited
		t.Fatalf("child hung; killed pid %d; stderr: %s", c.pid, c.stderr.String())
	}
}

// serve runs Serve on the child's listener with a log captured in logs.
func (c *childProc) serve(ctx context.Context, pol Policy, logs *testkit.LockedBuffer) chan error {
	done := make(chan error, 1)
	if c.nfd < 0 {
		done <- nil
		return done
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { done <- Serve(ctx, c.nfd, pol, logger) }()
	return done
}

// runChild starts the child with plan, serves its listener with pol (unless the plan has
// no filter) and returns what it reported. during, if set, runs while the child runs.
func runChild(t testing.TB, plan childPlan, pol Policy, during func(pid int)) gateRun {
	t.Helper()
	c := startChild(t, plan)
	logs := &testkit.LockedBuffer{}
	serveDone := c.serve(context.Background(), pol, logs)
	if during != nil {
		during(c.pid)
	}
	c.wait(t, 90*time.Second)
	var run gateRun
	select {
	case run.serveErr = <-serveDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s after the child exited")
	}
	if err := json.Unmarshal(c.stdout.Bytes(), &run.res); err != nil {
		t.Fatalf("parse child output %q: %v; stderr: %s", c.stdout.String(), err, c.stderr.String())
	}
	run.log = logs.String()
	return run
}

func recvListener(fd int, timeout time.Duration) (int, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, int(timeout.Milliseconds()))
	for err == unix.EINTR { // SIGCHLD and Go's preemption signals
		n, err = unix.Poll(pfd, int(timeout.Milliseconds()))
	}
	if err != nil {
		return -1, err
	}
	if n == 0 {
		return -1, fmt.Errorf("no listener within %v", timeout)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("parse control message: %v (%d messages)", err, len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("parse rights: %v", err)
	}
	return fds[0], nil
}
