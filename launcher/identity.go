package launcher

import (
	"errors"
	"runtime"

	"github.com/ocnix/ocnix/internal/account"
	"github.com/ocnix/ocnix/internal/safefs"
)

// identity is the instance's account, resolved once before setup does
// anything so that a missing user fails before any side effect.
type identity struct {
	user, group string
	uid, gid    int
	groups      []int // supplementary groups of user, including gid
}

func (id identity) owner() *safefs.Owner { return &safefs.Owner{UID: id.uid, GID: id.gid} }

// lookupIdentity resolves the instance's user and group with the rule the
// sandbox applies too (internal/account): never root's uid or gid.
func lookupIdentity(userName, groupName string) (identity, error) {
	a, err := account.Lookup(userName, groupName)
	switch {
	case errors.Is(err, account.ErrUnknown):
		return identity{}, errorf(ExitNoInput, "%w; the Nix module creates it, or create it with useradd --system / groupadd --system", err)
	case errors.Is(err, account.ErrPrivileged):
		return identity{}, errorf(ExitPermission, "%w", err)
	case err != nil:
		return identity{}, err
	}
	return identity{user: a.User, group: a.Group, uid: a.UID, gid: a.GID, groups: a.Groups}, nil
}

// errAccessDenied means the kernel said no to the instance's credentials.
var errAccessDenied = errors.New("access denied")

// accessAs asks the kernel whether id may access path with mode (unix.R_OK,
// W_OK, X_OK), so that ACLs, search permission on every parent and read-only
// mounts all count, exactly as they will for the server. It switches the
// credentials of one locked OS thread only (raw syscalls, not Go's
// all-threads setresuid); if switching back fails, that thread is discarded.
// Needs root.
func accessAs(path string, mode uint32, id identity) error {
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		err, poisoned := accessOnThread(path, mode, id)
		if !poisoned {
			runtime.UnlockOSThread()
		}
		// A poisoned thread stays locked: the runtime terminates it when this
		// goroutine exits, so no other goroutine ever runs with these creds.
		done <- result{err: err}
	}()
	return (<-done).err
}
