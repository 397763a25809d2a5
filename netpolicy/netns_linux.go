package netpolicy

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ensureRunDir makes /run/netns exist and be a shared mount point, exactly
// as `ip netns add` does, so that namespaces bound there later propagate
// into mount namespaces copied from the host (systemd units with private
// mounts, other `ip netns exec` sessions).
func ensureRunDir() error {
	if err := os.MkdirAll(NetnsRunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsRunDir, err)
	}
	err := unix.Mount("", NetnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", NetnsRunDir, err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself, then retry.
	if err := unix.Mount(NetnsRunDir, NetnsRunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto itself: %w", NetnsRunDir, err)
	}
	if err := unix.Mount("", NetnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetnsRunDir, err)
	}
	return nil
}

// isNetnsMount reports whether path is a bind mount of a network namespace.
// A plain file at the path (left by a crash between create and mount) is
// not.
func isNetnsMount(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return false, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return false, fmt.Errorf("ioctl NS_GET_NSTYPE %s: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return false, fmt.Errorf("%s is a namespace but not a network namespace", path)
	}
	return true, nil
}

// ensureNetns creates the named netns at path if it is not there. Every
// step is safe to repeat: a crash before the bind mount leaves an empty
// file that the next run reuses; a crash before that leaves nothing,
// because an unshared but unmounted namespace dies with its thread.
//
// The pin (the bind mount) is made in the host's mount namespace
// (inHostMounts): a caller in a mount namespace of its own (the setup unit
// with ProtectSystem= and friends) would otherwise pin the namespace where
// only it sees it, and the server's NetworkNamespacePath= would not find it.
// /run/netns is shared in the host, so the pin propagates back into the
// caller's (slave) view. /run/netns itself is made shared there too.
func ensureNetns(path string) error {
	return inHostMounts(func() error {
		if err := ensureRunDir(); err != nil {
			return err
		}
		ok, err := isNetnsMount(path)
		if err != nil || ok {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
		if err != nil {
			return fmt.Errorf("create mount point %s: %w", path, err)
		}
		f.Close()
		// inHostMounts' thread is locked and destroyed afterwards, so it may
		// end up in the new netns: no other goroutine ever runs there.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare CLONE_NEWNET: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto %s: %w", src, path, err)
		}
		return nil
	})
}

// inHostMounts runs fn on a locked OS thread that is in the host's mount
// namespace; the thread is destroyed afterwards, never returned to the Go
// scheduler in another namespace. It joins PID 1's mount namespace only
// when the caller's differs and PID 1's can be read; otherwise (the same
// namespace, or a machine where PID 1 is not readable, e.g. in a container
// without systemd) fn runs in the caller's, as before.
//
// setns(CLONE_NEWNS) refuses a thread that shares its fs_struct (cwd, root)
// with other threads, which every Go thread does: unshare(CLONE_FS) first.
func inHostMounts(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := unix.Open(hostMountNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fn() // PID 1 unreadable: stay
			return
		}
		defer unix.Close(host)
		var hst, own unix.Stat_t
		if err := unix.Fstat(host, &hst); err != nil {
			errc <- fmt.Errorf("stat %s: %w", hostMountNS, err)
			return
		}
		if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/mnt", unix.Gettid()), &own); err != nil {
			errc <- fmt.Errorf("stat own mount namespace: %w", err)
			return
		}
		if hst.Dev == own.Dev && hst.Ino == own.Ino {
			errc <- fn()
			return
		}
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare CLONE_FS before joining the host's mount namespace: %w", err)
			return
		}
		if err := unix.Setns(host, unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("join the host's mount namespace (%s) to pin the network namespace there: %w", hostMountNS, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// deleteNetns unmounts and removes the named netns, like `ip netns del`,
// in the host's mount namespace, where ensureNetns pinned it. The namespace
// itself lives on while a process is still in it.
func deleteNetns(path string) error {
	return inHostMounts(func() error { return deleteNetnsHere(path) })
}

func deleteNetnsHere(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// inNetns runs fn on a thread that has joined the namespace nsfd. The
// thread stays locked and is destroyed afterwards rather than restored, so
// a failed switch back can never leak a thread in the wrong namespace into
// the Go scheduler.
func inNetns(nsfd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Enter moves the calling OS thread into the instance netns and into a
// private mount namespace in which the instance resolv.conf is bind-mounted
// over /etc/resolv.conf, as `ip netns exec` does. The caller must hold
// runtime.LockOSThread and start the server from this goroutine, and never
// unlock the thread: it is no longer in the host namespaces.
//
// For a plan with isolation disabled it does nothing.
func Enter(p Plan) error {
	if !p.Enable {
		return nil
	}
	ok, err := isNetnsMount(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: %w", p.Netns, err)
	}
	if !ok {
		return fmt.Errorf("netpolicy: enter netns %s: %s is not a mounted network namespace; run setup first", p.Netns, p.NetnsPath)
	}
	if _, err := os.Stat(p.ResolvConf); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: resolv.conf: %w; run setup first", p.Netns, err)
	}
	fd, err := unix.Open(p.NetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: open %s: %w", p.Netns, p.NetnsPath, err)
	}
	defer unix.Close(fd)
	// Refuse a netns whose filter is gone (for example after `ip netns
	// exec … nft flush ruleset`): joining it would mean unfiltered egress.
	if err := checkFilter(p, fd); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: %w; run setup again", p.Netns, err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: setns: %w", p.Netns, err)
	}
	// A private mount namespace for this thread only (CLONE_NEWNS implies
	// CLONE_FS, which a single thread may unshare), made a slave so that
	// nothing mounted here propagates back to the host.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: unshare CLONE_NEWNS: %w", p.Netns, err)
	}
	if err := unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: make / a slave mount: %w", p.Netns, err)
	}
	// Unlike ip netns exec, /sys is not remounted: that would detach its
	// submounts (/sys/fs/cgroup, which runtimes read for CPU and memory
	// limits) for a cosmetic gain (/sys/class/net listing the netns's
	// links), and the systemd path (NetworkNamespacePath=) does not do it
	// either, so both paths give the server the same view.
	if err := unix.Mount(p.ResolvConf, "/etc/resolv.conf", "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("netpolicy: enter netns %s: bind-mount %s over /etc/resolv.conf: %w", p.Netns, p.ResolvConf, err)
	}
	return nil
}

// Verify checks, without privileges, that the calling thread is in the
// instance netns, by comparing the device and inode of
// /proc/thread-self/ns/net with the bind mount at /run/netns/<netns>. It
// fails closed: a missing or unmounted namespace is an error, not a pass.
// Under systemd (NetworkNamespacePath=) every thread is in the namespace.
func Verify(p Plan) error {
	if !p.Enable {
		return nil
	}
	ok, err := isNetnsMount(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("netpolicy: verify netns %s: %w", p.Netns, err)
	}
	if !ok {
		return fmt.Errorf("netpolicy: verify netns %s: %s is not a mounted network namespace (run setup first): %w", p.Netns, p.NetnsPath, ErrNotInNetns)
	}
	var want, have unix.Stat_t
	if err := unix.Stat(p.NetnsPath, &want); err != nil {
		return fmt.Errorf("netpolicy: verify netns %s: stat %s: %w", p.Netns, p.NetnsPath, err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &have); err != nil {
		return fmt.Errorf("netpolicy: verify netns %s: stat /proc/thread-self/ns/net: %w", p.Netns, err)
	}
	if want.Dev != have.Dev || want.Ino != have.Ino {
		return fmt.Errorf("netpolicy: verify netns %s: this process is in net:[%d], the instance netns is net:[%d]; refusing to run without isolation: %w",
			p.Netns, have.Ino, want.Ino, ErrNotInNetns)
	}
	return nil
}
