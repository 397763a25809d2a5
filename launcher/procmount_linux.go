package launcher

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// privateProc gives the calling thread, which must be locked and is the one
// the sandbox forks from, a mount namespace of its own with a fresh /proc
// mounted hidepid=invisible: the instance then sees only its own user's
// processes, as under systemd's ProtectProc=invisible. Without it, `run` as
// root (outside systemd, or an operator's `run -- CMD`) showed every
// process's command line and environment-free details on the host.
//
// /proc/net/unix is per network namespace, not per pid, so it still lists
// the host's unix sockets for an instance without network isolation.
//
// The same unshare gives the thread a System V IPC namespace of its own
// (systemd's PrivateIPC= under User=): Landlock does not cover shmget,
// msgget and semget, so the host's and other instances' segments with a
// loose mode would otherwise be open to the instance. A fresh IPC namespace
// also brings its own POSIX message queues (mq_open resolves names in it).
func privateProc() error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWIPC); err != nil {
		return fmt.Errorf("private /proc: unshare the mount and IPC namespaces: %w", err)
	}
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("private /proc: make / a slave mount: %w", err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	err := unix.Mount("proc", "/proc", "proc", flags, "hidepid=invisible")
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 5.8 know only the numeric form.
		err = unix.Mount("proc", "/proc", "proc", flags, "hidepid=2")
	}
	if err != nil {
		return fmt.Errorf("private /proc: mount proc with hidepid: %w", err)
	}
	return nil
}
