package unixgate

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestServeRaceNeverReachesDeniedSocket flips the address between an allowed and a denied
// path while the kernel and the supervisor read it. The supervisor decides on its one copy,
// so the denied server must never accept. The allowed one must accept sometimes, or the
// test could not fail.
func TestServeRaceNeverReachesDeniedSocket(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	if runtime.NumCPU() < 2 {
		t.Logf("only %d CPU: the flipping thread races by preemption only", runtime.NumCPU())
	}
	u := newTestUser(t)
	for _, asUser := range []bool{false, true} {
		name, plan := "AsRoot", childPlan{}
		if asUser {
			name, plan = "AsUser", childPlan{UID: u.uid, GID: u.gid}
		}
		t.Run(name, func(t *testing.T) { raceOnce(t, plan) })
	}
}

func raceOnce(t *testing.T, plan childPlan) {
	dir := openTempDir(t)
	good := listenUnix(t, filepath.Join(dir, "good.sock"), 0o666)
	evil := listenUnix(t, filepath.Join(dir, "evil.sock"), 0o666)
	pol := Policy{Instance: "race", Allow: []string{filepath.Join(dir, "good.sock")}}
	const tries = 2000
	plan.Probes = []probe{{
		Name: "race", Kind: "race", N: tries,
		Path: filepath.Join(dir, "good.sock"), Evil: filepath.Join(dir, "evil.sock"),
	}}
	run := runChild(t, plan, pol, nil)
	counts := run.res.Counts["race"]
	// Every connect the child saw succeed is queued at one of the two servers; under
	// emulation their accept loops may lag well behind the child's exit.
	var nGood, nEvil int
	for deadline := time.Now().Add(10 * time.Second); ; {
		nGood, _ = good.accepted()
		nEvil, _ = evil.accepted()
		if nGood+nEvil >= counts["ok"] || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d tries: child results %v; accepts good=%d evil=%d; restarted calls answered as before: %d",
		tries, counts, nGood, nEvil, strings.Count(run.log, "restarted connect gets its first answer"))
	if nEvil != 0 {
		t.Errorf("denied server accepted %d connections, want 0", nEvil)
	}
	if nGood == 0 || counts["ok"] == 0 {
		t.Errorf("allowed server accepted %d (child saw %d ok), want some: the race did not exercise the allow path", nGood, counts["ok"])
	}
	if counts["ok"] != nGood {
		t.Errorf("child saw %d successful connects but the allowed server accepted %d", counts["ok"], nGood)
	}
	if counts["ok"]+counts["EACCES"] != tries {
		t.Errorf("results %v: want only ok and EACCES, %d in all", counts, tries)
	}
}

// TestServeBoundsPendingConnects fills a server's backlog and starts many blocking
// connects: at most MaxPending wait in the supervisor, the rest get EAGAIN at once, and
// the supervisor's thread count stays bounded.
func TestServeBoundsPendingConnects(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	dir := openTempDir(t)
	full := filepath.Join(dir, "full.sock")
	fullListener(t, full)
	const maxPending, callers = 4, 40
	pol := Policy{Instance: "pending", Allow: []string{full}, MaxPending: maxPending}
	before := threads(t)
	peak := before
	plan := childPlan{Probes: []probe{{Name: "pending", Kind: "pending", Path: full, N: callers, Wait: 1500}}}
	start := time.Now()
	run := runChild(t, plan, pol, func(int) {
		deadline := time.Now().Add(800 * time.Millisecond)
		for time.Now().Before(deadline) {
			peak = max(peak, threads(t))
			time.Sleep(10 * time.Millisecond)
		}
	})
	elapsed := time.Since(start)
	counts := run.res.Counts["pending"]
	t.Logf("results %v in %v; supervisor threads %d before, %d at peak", counts, elapsed, before, peak)
	// The backlog of 0 still queues one connection; the waiting ones time out (EAGAIN
	// after the caller's 1.5 s SO_SNDTIMEO) like the rest, which were refused at once.
	if counts["EAGAIN"] < callers-2 || counts["EAGAIN"]+counts["ok"] != callers {
		t.Errorf("results %v: want EAGAIN for all but at most one of %d", counts, callers)
	}
	if peak > before+maxPending+4 {
		t.Errorf("supervisor grew from %d to %d threads, want at most %d more than MaxPending=%d",
			before, peak, 4, maxPending)
	}
	if elapsed > 10*time.Second {
		t.Errorf("took %v: waiting connects were not bounded by the caller's timeout", elapsed)
	}
}

// fullListener listens with a backlog of 0 and never accepts, so connects soon block.
func fullListener(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
}

// threads counts this process's OS threads.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}
