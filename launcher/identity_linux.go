package launcher

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/ocnix/ocnix/internal/exitcode"
	"golang.org/x/sys/unix"
)

// accessOnThread runs on a locked OS thread: it takes on id's credentials
// for one faccessat and restores the thread's own afterwards. poisoned means
// the thread may still hold foreign credentials or lost capabilities and must
// never run another goroutine.
func accessOnThread(path string, mode uint32, id identity) (err error, poisoned bool) {
	groups, err := unix.Getgroups()
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
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(ruid), uintptr(euid), uintptr(suid)); e != 0 {
			return fmt.Errorf("restore uids: %w", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(rgid), uintptr(egid), uintptr(sgid)); e != 0 {
			return fmt.Errorf("restore gids: %w", e)
		}
		if err := setgroupsThread(groups); err != nil {
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
	if err := setgroupsThread(id.groups); err != nil {
		return err, restore() != nil
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(id.gid), uintptr(id.gid), ^uintptr(0)); e != 0 {
		err := fmt.Errorf("setresgid %d: %w", id.gid, e)
		return err, restore() != nil
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(id.uid), uintptr(id.uid), ^uintptr(0)); e != 0 {
		err := fmt.Errorf("setresuid %d: %w", id.uid, e)
		return err, restore() != nil
	}
	// faccessat without AT_EACCESS checks the real ids, which are now the
	// instance's; with a non-zero real uid the kernel also ignores our caps.
	aerr := unix.Faccessat(unix.AT_FDCWD, path, mode, 0)
	if rerr := restore(); rerr != nil {
		return exitcode.Bugf("%w", rerr), true
	}
	switch {
	case aerr == nil:
		return nil, false
	case errors.Is(aerr, unix.EACCES), errors.Is(aerr, unix.EPERM), errors.Is(aerr, unix.EROFS):
		return fmt.Errorf("%w: %w", errAccessDenied, aerr), false
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

// setgroupsThread sets the supplementary groups of this thread only. Go's
// syscall.Setgroups would change every thread of the process.
func setgroupsThread(gids []int) error {
	g := make([]uint32, len(gids))
	for i, v := range gids {
		g[i] = uint32(v)
	}
	var p unsafe.Pointer
	if len(g) > 0 {
		p = unsafe.Pointer(&g[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(g)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	runtime.KeepAlive(g)
	return nil
}
