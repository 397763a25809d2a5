package launcher

import (
	"errors"

	"github.com/ocnix/ocnix/internal/account"
	"github.com/ocnix/ocnix/internal/safefs"
	"github.com/ocnix/ocnix/internal/threadcred"
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
var errAccessDenied = threadcred.ErrDenied

// accessAs asks the kernel whether id may access path with mode (unix.R_OK,
// W_OK, X_OK) on one thread with id's credentials (internal/threadcred).
// Needs root.
func accessAs(path string, mode uint32, id identity) error {
	return threadcred.Access(path, mode, id.uid, id.gid, id.groups)
}
