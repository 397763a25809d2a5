package childproc

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// setParentDeathSignal makes the kernel SIGKILL the child when setup dies.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// waitExitedNoReap blocks until pid has exited but leaves it a zombie, so that
// its pid, and with it the process group id, cannot be reused while we kill
// what is left of the group.
func waitExitedNoReap(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

var subreaper struct {
	sync.Once
	err error
}

// becomeSubreaper makes this process the reaper of its orphaned
// descendants (PR_SET_CHILD_SUBREAPER), once.
func becomeSubreaper() error {
	subreaper.Do(func() { subreaper.err = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
	return subreaper.err
}

// maxOrphanRounds bounds killOrphans against a tree that keeps forking: each
// round kills every child we have, and the children of those come to us next.
const maxOrphanRounds = 64

// killOrphans SIGKILLs and reaps every child this process has, which after
// Run's own child was reaped are the descendants it left behind (re-parented
// to us as the subreaper). Run is the only place the process starts
// children, and it runs one at a time.
func killOrphans() {
	for range maxOrphanRounds {
		pids := children()
		if len(pids) == 0 {
			return
		}
		left := map[int]bool{}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
			left[pid] = true
		}
		// Reap in whatever order they die, not one pid after the other:
		// the init of a sandbox's PID namespace (its guard) does not
		// finish dying until every process of its namespace has been
		// reaped, and the server of that namespace, orphaned with the
		// guard when `run` was killed, is our child too.
		for len(left) > 0 {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				break // ECHILD: nothing left
			}
			delete(left, pid)
		}
	}
}

// children lists this process's children, from every thread: an orphan is
// re-parented to one thread of the subreaper.
func children() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
