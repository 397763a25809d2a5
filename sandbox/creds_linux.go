package sandbox

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ocnix/ocnix/internal/account"
	"github.com/ocnix/ocnix/internal/threadcred"
	"golang.org/x/sys/unix"
)

// identity is the instance user as numbers. It is resolved in the
// launcher, before any fork and long before seccomp is loaded: NSS may
// connect to nscd or sssd, which must not happen once connect(2) goes
// to a supervisor that is not listening yet.
type identity struct {
	UID    int   `json:"uid"`
	GID    int   `json:"gid"`
	Groups []int `json:"groups"` // the user's own supplementary groups, sorted
	// Drop is true when the launcher runs as root and must switch.
	Drop bool `json:"drop"`
	// ExtraGroups are groups the process has (started as the instance
	// user, e.g. systemd SupplementaryGroups=) beyond the user's own;
	// without CAP_SETGID they cannot be dropped, so Run warns.
	ExtraGroups []int `json:"extraGroups,omitempty"`
}

func resolveIdentity(p Plan) (identity, error) {
	// The one lookup and rule of every layer (internal/account): never
	// root's uid or gid, never a member of group 0.
	a, err := account.Lookup(p.User, p.Group)
	if err != nil {
		return identity{}, fmt.Errorf("sandbox: instance %q: %w", p.Instance, err)
	}
	id := identity{UID: a.UID, GID: a.GID, Groups: a.Groups}

	ruid, euid, suid := unix.Getresuid()
	switch {
	case ruid == 0 && euid == 0 && suid == 0:
		id.Drop = true
	case ruid == id.UID && euid == id.UID && suid == id.UID:
		rgid, egid, sgid := unix.Getresgid()
		if rgid != id.GID || egid != id.GID || sgid != id.GID {
			return identity{}, fmt.Errorf("sandbox: instance %q: running as user %q but with gid %d/%d/%d, want group %q (gid %d): %w", p.Instance, p.User, rgid, egid, sgid, p.Group, id.GID, ErrWrongUser)
		}
		have, err := unix.Getgroups()
		if err != nil {
			return identity{}, fmt.Errorf("sandbox: getgroups: %w", err)
		}
		for _, g := range have {
			if g == 0 {
				return identity{}, fmt.Errorf("sandbox: instance %q: process has supplementary group 0 and cannot drop it: %w", p.Instance, ErrWrongUser)
			}
			if !slices.Contains(id.Groups, g) && g != id.GID {
				id.ExtraGroups = append(id.ExtraGroups, g)
			}
		}
	default:
		return identity{}, fmt.Errorf("sandbox: instance %q: running as uid %d (euid %d), want root or the instance user %q (uid %d): start it as root or with User=%s: %w", p.Instance, ruid, euid, p.User, id.UID, p.User, ErrWrongUser)
	}
	return id, nil
}

// dropPrivileges switches the calling OS thread to id for good. Like
// applyLandlock it works per thread (raw syscalls, no glibc broadcast
// to every thread, which costs milliseconds): the caller execs from
// this thread next, and execve takes the credentials of the calling
// thread only.
func dropPrivileges(id identity) error {
	if !id.Drop {
		return dropCapabilities(id)
	}
	if err := threadcred.Setgroups(id.Groups); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := threadcred.Setresgid(id.GID, id.GID, id.GID); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	// Leaving uid 0 clears the permitted, effective and ambient
	// capability sets (no SECBIT_KEEP_CAPS is set).
	if err := threadcred.Setresuid(id.UID, id.UID, id.UID); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return dropCapabilities(id)
}

// dropCapabilities clears whatever capabilities are left. Ambient
// capabilities (systemd AmbientCapabilities=) would survive execve even
// with no_new_privs, so they are cleared too; then the result is
// verified.
func dropCapabilities(id identity) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("sandbox: clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("sandbox: clear capabilities: %w", err)
	}
	return verifyIdentity(id)
}

// verifyIdentity checks the result instead of trusting the calls: a
// half-done drop must never reach execve.
func verifyIdentity(id identity) error {
	r, e, s := unix.Getresuid()
	if r != id.UID || e != id.UID || s != id.UID {
		return bug(fmt.Errorf("after drop: uids %d/%d/%d, want %d", r, e, s, id.UID))
	}
	rg, eg, sg := unix.Getresgid()
	if rg != id.GID || eg != id.GID || sg != id.GID {
		return bug(fmt.Errorf("after drop: gids %d/%d/%d, want %d", rg, eg, sg, id.GID))
	}
	if id.Drop {
		gs, err := unix.Getgroups()
		if err != nil {
			return fmt.Errorf("sandbox: getgroups: %w", err)
		}
		slices.Sort(gs)
		if !slices.Equal(gs, id.Groups) {
			return bug(fmt.Errorf("after drop: groups %v, want %v", gs, id.Groups))
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("sandbox: capget: %w", err)
	}
	for _, d := range data {
		if d.Effective != 0 || d.Permitted != 0 || d.Inheritable != 0 {
			return fmt.Errorf("sandbox: capabilities left after drop (effective %#x, permitted %#x): refusing to run", d.Effective, d.Permitted)
		}
	}
	return nil
}
