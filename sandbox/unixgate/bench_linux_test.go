package unixgate

import (
	"path/filepath"
	"testing"
)

// BenchmarkConnect times connect+close to an allowed unix socket inside the child, bare
// (no filter) and through the gate, as root and as an unprivileged user (the production
// case, which adds the credential switch). ns/op is the child's own loop time per connect;
// process start-up is not counted. Goal: at most 30 µs more than Bare.
//
//	sudo -E go test -run '^$' -bench Connect ./sandbox/unixgate/
func BenchmarkConnect(b *testing.B) {
	requireRoot(b)
	requireUserNotif(b)
	dir := openTempDir(b)
	path := filepath.Join(dir, "bench.sock")
	listenUnix(b, path, 0o666)
	pol := Policy{Instance: "bench", Allow: []string{path}}
	u := newTestUser(b)
	for _, c := range []struct {
		name string
		plan childPlan
	}{
		{name: "Bare", plan: childPlan{NoFilter: true}},
		{name: "GateAsRoot", plan: childPlan{}},
		{name: "GateAsUser", plan: childPlan{UID: u.uid, GID: u.gid}},
	} {
		b.Run(c.name, func(b *testing.B) {
			plan := c.plan
			plan.Probes = []probe{{Name: "bench", Kind: "bench", Path: path, N: b.N}}
			run := runChild(b, plan, pol, nil)
			if run.serveErr != nil {
				b.Errorf("Serve: %v", run.serveErr)
			}
			b.ReportMetric(float64(run.res.Nanos["bench"])/float64(b.N), "ns/op")
		})
	}
}
