// Package account resolves an instance's user and group to numbers, once,
// with the one rule every layer applies: an instance never runs as root,
// in root's group, or with root's group among its own.
package account

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// ErrUnknown marks a user or group that does not exist (yet): the NixOS
// module creates them, so the caller's message says how.
var ErrUnknown = errors.New("no such account")

// ErrPrivileged marks an account that would run the instance with root's
// uid or gid.
var ErrPrivileged = errors.New("the instance must not run as root")

// Account is an instance's user and group as numbers.
type Account struct {
	User, Group string
	UID, GID    int
	// Groups are the user's groups (from the group database), GID included,
	// sorted and without duplicates.
	Groups []int
}

// Lookup resolves userName and groupName through NSS. Call it before any
// confinement: NSS may connect to nscd or sssd.
func Lookup(userName, groupName string) (Account, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		return Account{}, fmt.Errorf("user %q: %w (%v)", userName, ErrUnknown, err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		return Account{}, fmt.Errorf("group %q: %w (%v)", groupName, ErrUnknown, err)
	}
	a := Account{User: userName, Group: groupName}
	if a.UID, err = strconv.Atoi(u.Uid); err != nil {
		return Account{}, fmt.Errorf("user %q: uid %q is not a number", userName, u.Uid)
	}
	if a.GID, err = strconv.Atoi(g.Gid); err != nil {
		return Account{}, fmt.Errorf("group %q: gid %q is not a number", groupName, g.Gid)
	}
	if a.UID == 0 || a.GID == 0 {
		return Account{}, fmt.Errorf("user %q (uid %d), group %q (gid %d): %w; give it an unprivileged account of its own", userName, a.UID, groupName, a.GID, ErrPrivileged)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("user %q: list its groups: %w", userName, err)
	}
	a.Groups = []int{a.GID}
	for _, s := range gids {
		n, err := strconv.Atoi(s)
		if err != nil {
			return Account{}, fmt.Errorf("user %q: group id %q is not a number", userName, s)
		}
		if n == 0 {
			// Membership in root's group would hand out root-group files.
			return Account{}, fmt.Errorf("user %q is a member of group 0: %w; remove it from that group", userName, ErrPrivileged)
		}
		a.Groups = append(a.Groups, n)
	}
	slices.Sort(a.Groups)
	a.Groups = slices.Compact(a.Groups)
	return a, nil
}
