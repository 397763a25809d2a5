package unixgate

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestServeReplacedSocketNeverReachesStaleInode: nothing the gate keeps between connects
// (the caller's credentials, the thread's identity) may carry a decision over to a socket
// that has since been replaced. A database restart renames its old socket away and binds
// a new one at the allowed path: the next connect reaches the new server, and the old
// inode, now at a path outside the allow-list, is refused though it was allowed a moment
// ago. Then the allowed path becomes a symlink to a denied socket (what an attacker with
// write access to the directory would do): refused, and that server never sees a connect.
func TestServeReplacedSocketNeverReachesStaleInode(t *testing.T) {
	requireRoot(t)
	requireUserNotif(t)
	u := newTestUser(t)
	dir := openTempDir(t)
	allowed := filepath.Join(dir, "db.sock")
	stale := filepath.Join(dir, "db.sock.old")
	moved := filepath.Join(dir, "db.sock.moved")
	denied := filepath.Join(dir, "denied.sock")
	oldSrv := listenUnix(t, allowed, 0o666)
	deniedSrv := listenUnix(t, denied, 0o666)
	var newSrv *peer
	pol := Policy{Instance: "replace", Allow: []string{allowed}}
	// The sleeps give the test time to swap the files between the child's connects;
	// each swap starts as soon as the connect before it has been accepted.
	const pause = 3000
	plan := childPlan{UID: u.uid, GID: u.gid, Probes: []probe{
		{Name: "Original", Kind: "unix", Path: allowed},
		{Name: "pause1", Kind: "sleep", N: pause},
		// First while the gate still remembers the old inode at the allowed path.
		{Name: "StaleInodeBeforeReplacedIsUsed", Kind: "unix", Path: stale},
		{Name: "Replaced", Kind: "unix", Path: allowed},
		{Name: "StaleInodeMovedAway", Kind: "unix", Path: stale},
		{Name: "pause2", Kind: "sleep", N: pause},
		{Name: "SwappedForSymlinkToDenied", Kind: "unix", Path: allowed},
	}}
	waitAccepts := func(p *peer, n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			p.mu.Lock()
			c := p.count
			p.mu.Unlock()
			if c >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server saw %d connects, want %d", c, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	run := runChild(t, plan, pol, func(int) {
		waitAccepts(oldSrv, 1)
		mustT(t, os.Rename(allowed, stale))
		newSrv = listenUnix(t, allowed, 0o666)
		waitAccepts(newSrv, 1)
		mustT(t, os.Rename(allowed, moved))
		mustT(t, os.Symlink(denied, allowed))
	})
	if run.serveErr != nil {
		t.Errorf("Serve: %v", run.serveErr)
	}
	want := map[string]string{
		"Original": "ok", "StaleInodeBeforeReplacedIsUsed": "EACCES", "Replaced": "ok", "StaleInodeMovedAway": "EACCES",
		"SwappedForSymlinkToDenied": "EACCES",
	}
	delete(run.res.Results, "pause1")
	delete(run.res.Results, "pause2")
	if diff := cmp.Diff(want, run.res.Results); diff != "" {
		t.Errorf("errno per connect (-want +got):\n%s", diff)
	}
	if n, _ := oldSrv.accepted(); n != 1 {
		t.Errorf("the replaced server saw %d connects, want 1 (only the one before it was replaced)", n)
	}
	if n, _ := newSrv.accepted(); n != 1 {
		t.Errorf("the new server saw %d connects, want 1", n)
	}
	if n, _ := deniedSrv.accepted(); n != 0 {
		t.Errorf("the denied server saw %d connects, want 0", n)
	}
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
