package unixgate

import (
	"path/filepath"
	"testing"
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
