package threadcred

import (
	"errors"
	"runtime"
)

// ErrDenied means the kernel said no to the other user's credentials.
var ErrDenied = errors.New("access denied")

// Access asks the kernel whether uid (with gid and groups) may access path
// with mode (unix.R_OK, W_OK, X_OK), so that ACLs, search permission on
// every parent and read-only mounts all count, exactly as they will for a
// process of that user. It takes the credentials on a fresh locked OS
// thread only and restores them; if restoring fails, that thread is
// discarded (it stays locked, and the runtime ends it with its goroutine).
// Needs root.
func Access(path string, mode uint32, uid, gid int, groups []int) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, poisoned := accessOnThread(path, mode, uid, gid, groups)
		if !poisoned {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
