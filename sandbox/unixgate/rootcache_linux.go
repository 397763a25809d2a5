package unixgate

import "golang.org/x/sys/unix"

// maxCachedRoots bounds rootCache; it is simply emptied when full.
const maxCachedRoots = 64

// rootCache keeps the root directory of each caller task, so that a task connecting again
// costs a dup instead of a walk of /proc/<tid>/root (about 0.3 against 4 µs on the
// reference VM).
//
// The key is the pidfs inode of the task's pidfd, which the kernel never reuses, so an
// entry belongs to one task for good; it is added only after ID_VALID showed that the tid
// still named the caller when its root was opened. A task's root changes only through
// chroot, pivot_root, setns or a new mount namespace, which the filter must deny (see the
// package documentation); the working directory, which a task changes at will, is never
// cached. Used only from the notification loop, so it needs no lock.
type rootCache struct {
	m map[uint64]int // pidfs inode -> O_PATH fd of that task's root
}

// get returns a new fd of the cached root of task key, or -1.
func (rc *rootCache) get(key uint64) int {
	fd, ok := rc.m[key]
	if !ok || key == 0 {
		return -1
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return dup
}

// put remembers a copy of dirfd as the root of task key.
func (rc *rootCache) put(key uint64, dirfd int) {
	if key == 0 {
		return
	}
	if _, ok := rc.m[key]; ok {
		return
	}
	if rc.m == nil || len(rc.m) >= maxCachedRoots {
		rc.closeAll()
		rc.m = make(map[uint64]int)
	}
	dup, err := unix.FcntlInt(uintptr(dirfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return // only slower next time
	}
	rc.m[key] = dup
}

func (rc *rootCache) closeAll() {
	for _, fd := range rc.m {
		unix.Close(fd)
	}
	rc.m = nil
}

// taskKey is the pidfs inode of pidfd, or 0 when it cannot be read.
func taskKey(pidfd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(pidfd, &st) != nil {
		return 0
	}
	return st.Ino
}
