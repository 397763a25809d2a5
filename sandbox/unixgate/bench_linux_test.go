package unixgate

import (
	"encoding/json"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkConnect times connect+close to an allowed unix socket inside the child, bare
// (no filter) and through the gate, as root and as an unprivileged user (the production
// case, which adds the credential switch). ns/op is the child's own loop time per connect;
// process start-up is not counted. Goal: at most 30 µs more than Bare. DeniedAsUser
// connects to a socket outside the allow-list (EACCES and a log line): the gate's cost
// without the on-behalf connect.
//
//	sudo -E go test -run '^$' -bench Connect ./sandbox/unixgate/
func BenchmarkConnect(b *testing.B) {
	requireRoot(b)
	requireUserNotif(b)
	dir := openTempDir(b)
	path := filepath.Join(dir, "bench.sock")
	listenUnix(b, path, 0o666)
	denied := filepath.Join(dir, "denied.sock")
	listenUnix(b, denied, 0o666)
	pol := Policy{Instance: "bench", Allow: []string{path}}
	u := newTestUser(b)
	b.Run("FloorRespondOnly", func(b *testing.B) {
		// Not the gate: a loop that answers EACCES at once, the cost of the notification
		// round trip alone on this machine.
		plan := childPlan{UID: u.uid, GID: u.gid, Probes: []probe{{Name: "bench", Kind: "benchDenied", Path: denied, N: b.N}}}
		c := startChild(b, plan)
		go respondOnly(c.nfd)
		c.wait(b, 90*time.Second)
		var res childResult
		if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
			b.Fatalf("parse child output: %v", err)
		}
		b.ReportMetric(float64(res.Nanos["bench"])/float64(b.N), "ns/op")
	})
	for _, c := range []struct {
		name string
		kind string
		plan childPlan
	}{
		{name: "Bare", kind: "bench", plan: childPlan{NoFilter: true}},
		{name: "GateAsRoot", kind: "bench", plan: childPlan{}},
		{name: "GateAsUser", kind: "bench", plan: childPlan{UID: u.uid, GID: u.gid}},
		{name: "DeniedAsUser", kind: "benchDenied", plan: childPlan{UID: u.uid, GID: u.gid}},
	} {
		b.Run(c.name, func(b *testing.B) {
			plan := c.plan
			target := path
			if c.kind == "benchDenied" {
				target = denied
			}
			plan.Probes = []probe{{Name: "bench", Kind: c.kind, Path: target, N: b.N}}
			run := runChild(b, plan, pol, nil)
			if run.serveErr != nil {
				b.Errorf("Serve: %v", run.serveErr)
			}
			b.ReportMetric(float64(run.res.Nanos["bench"])/float64(b.N), "ns/op")
		})
	}
}

// respondOnly answers every notification with EACCES, inline, with synchronous wake-up,
// until the filter is gone.
func respondOnly(fd int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = setSyncWakeUp(fd)
	var req notifReq
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		pfd[0].Revents = 0
		if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
			return
		}
		if pfd[0].Revents&unix.POLLIN != 0 {
			if recvNotif(fd, &req) == nil {
				_ = sendResp(fd, req.ID, unix.EACCES)
			}
			continue
		}
		if pfd[0].Revents != 0 {
			return
		}
	}
}
