package unixgate

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxCachedCreds bounds the cache; it is simply emptied when full.
const maxCachedCreds = 4096

// credCache avoids reading /proc/<tid>/status (tens of µs) on every connect.
//
// The key is the pidfs inode of the thread's pidfd, which the kernel never reuses, so a
// recycled tid cannot hit an old entry. An entry is used only while PIDFD_GET_INFO still
// reports the same uids and gids, and only for tasks with no permitted capabilities: such
// a task cannot call setgroups or raise capabilities, and an exec that changes its
// credentials (setuid, setgid) shows in the ids. File capabilities gained by an exec
// would be missed, which can only make the gate stricter than the caller. Used only from
// the notification loop, so it needs no lock.
type credCache struct {
	m       map[uint64]credEntry
	noInfo  bool // PIDFD_GET_INFO is missing (Linux < 6.13): always read status
	statBuf []byte
}

type credEntry struct {
	ids [8]uint32
	c   creds
}

func pidfdIDs(pidfd int) ([8]uint32, error) {
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_CREDS}
	if err := unix.IoctlPidfdInfo(pidfd, &info); err != nil {
		return [8]uint32{}, err
	}
	if info.Mask&unix.PIDFD_INFO_CREDS == 0 {
		return [8]uint32{}, unix.EOPNOTSUPP
	}
	return [8]uint32{info.Ruid, info.Euid, info.Suid, info.Fsuid, info.Rgid, info.Egid, info.Sgid, info.Fsgid}, nil
}

// lookup returns the credentials of thread tid, whose pidfd is pidfd and pidfs inode key
// (0: not read yet). The caller must check that the notification is still valid
// afterwards, because status is read by tid.
func (cc *credCache) lookup(tid, pidfd int, key uint64) (creds, error) {
	var ids [8]uint32
	if !cc.noInfo {
		var err error
		if key == 0 {
			var st unix.Stat_t
			err = unix.Fstat(pidfd, &st)
			key = st.Ino
		}
		if err == nil {
			ids, err = pidfdIDs(pidfd)
		}
		switch {
		case err == unix.ENOTTY || err == unix.EINVAL || err == unix.EOPNOTSUPP:
			cc.noInfo = true
		case err != nil:
			return creds{}, fmt.Errorf("read credentials of thread %d: %w", tid, err)
		default:
			if e, ok := cc.m[key]; ok && e.ids == ids {
				return e.c, nil
			}
		}
	}
	c, cacheable, err := cc.readStatus(tid)
	if err != nil {
		return creds{}, err
	}
	if key != 0 && cacheable && !cc.noInfo {
		if cc.m == nil || len(cc.m) >= maxCachedCreds {
			cc.m = make(map[uint64]credEntry)
		}
		cc.m[key] = credEntry{ids: ids, c: c}
	}
	return c, nil
}

func (cc *credCache) readStatus(tid int) (creds, bool, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return creds{}, false, fmt.Errorf("read credentials of thread %d: %w", tid, err)
	}
	defer f.Close()
	if cc.statBuf == nil {
		cc.statBuf = make([]byte, 8192)
	}
	n, err := f.Read(cc.statBuf)
	if err != nil {
		return creds{}, false, fmt.Errorf("read credentials of thread %d: %w", tid, err)
	}
	c, prmZero, err := parseStatus(cc.statBuf[:n])
	if err != nil {
		return creds{}, false, fmt.Errorf("read credentials of thread %d: %w", tid, err)
	}
	return c, prmZero, nil
}
