package launcher

import (
	"errors"
	"fmt"
	"os/user"
	"runtime"
	"strconv"
)

// identity is the instance's account, resolved once before setup does
// anything so that a missing user fails before any side effect.
type identity struct {
	user, group string
	uid, gid    int
	groups      []int // supplementary groups of user, including gid
}

func (id identity) owner() *owner { return &owner{uid: id.uid, gid: id.gid} }

// lookupIdentity resolves the instance's user and group with os/user.
func lookupIdentity(userName, groupName string) (identity, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		return identity{}, errorf(ExitNoInput, "user %q: look it up: %w; the Nix module creates it, or create it with useradd --system", userName, err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		return identity{}, errorf(ExitNoInput, "group %q: look it up: %w; the Nix module creates it, or create it with groupadd --system", groupName, err)
	}
	id := identity{user: userName, group: groupName}
	if id.uid, err = strconv.Atoi(u.Uid); err != nil {
		return identity{}, fmt.Errorf("user %q: uid %q: %w", userName, u.Uid, err)
	}
	if id.gid, err = strconv.Atoi(g.Gid); err != nil {
		return identity{}, fmt.Errorf("group %q: gid %q: %w", groupName, g.Gid, err)
	}
	if id.uid == 0 {
		return identity{}, errorf(ExitPermission, "user %q has uid 0; an instance must run as its own unprivileged account", userName)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return identity{}, fmt.Errorf("user %q: list its groups: %w", userName, err)
	}
	id.groups = []int{id.gid}
	for _, s := range gids {
		n, err := strconv.Atoi(s)
		if err == nil && n != id.gid {
			id.groups = append(id.groups, n)
		}
	}
	return id, nil
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
