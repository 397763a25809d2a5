package threadcred

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// accessOnThread runs on a locked OS thread: it takes on id's credentials
// for one faccessat and restores the thread's own afterwards. poisoned means
// the thread may still hold foreign credentials or lost capabilities and must
// never run another goroutine.
func accessOnThread(path string, mode uint32, uid, gid int, groups []int) (err error, poisoned bool) {
	own, err := unix.Getgroups()
	if err != nil {
		return fmt.Errorf("getgroups: %w", err), false
	}
	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	if euid != 0 {
		return errors.New("checking access as another user needs root"), false
	}
	capsBefore, err := effectiveCaps()
	if err != nil {
		return err, false
	}
	restore := func() error {
		// The saved uid stays as it was (0 for root), which lets the thread
		// regain its euid and, with it, its effective capabilities.
		if err := Setresuid(ruid, euid, suid); err != nil {
			return fmt.Errorf("restore uids: %w", err)
		}
		if err := Setresgid(rgid, egid, sgid); err != nil {
			return fmt.Errorf("restore gids: %w", err)
		}
		if err := Setgroups(own); err != nil {
			return err
		}
		caps, err := effectiveCaps()
		if err != nil {
			return err
		}
		if caps != capsBefore {
			return fmt.Errorf("effective capabilities %x after restoring, %x before", caps, capsBefore)
		}
		return nil
	}
	if err := Setgroups(groups); err != nil {
		return err, restore() != nil
	}
	if err := Setresgid(gid, gid, Keep); err != nil {
		return err, restore() != nil
	}
	if err := Setresuid(uid, uid, Keep); err != nil {
		return err, restore() != nil
	}
	// faccessat without AT_EACCESS checks the real ids, which are now the
	// instance's; with a non-zero real uid the kernel also ignores our caps.
	aerr := unix.Faccessat(unix.AT_FDCWD, path, mode, 0)
	if rerr := restore(); rerr != nil {
		return fmt.Errorf("bug: restore the thread's credentials: %w", rerr), true
	}
	switch {
	case aerr == nil:
		return nil, false
	case errors.Is(aerr, unix.EACCES), errors.Is(aerr, unix.EPERM), errors.Is(aerr, unix.EROFS):
		return fmt.Errorf("%w: %w", ErrDenied, aerr), false
	}
	return aerr, false
}

// effectiveCaps reads this thread's effective capability set.
func effectiveCaps() ([2]uint32, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return [2]uint32{}, fmt.Errorf("capget: %w", err)
	}
	return [2]uint32{data[0].Effective, data[1].Effective}, nil
}
