// Package setuplock is the per-instance setup lock: one flock(2)ed file per
// instance in a root-only directory under /run.
package setuplock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ocnix/ocnix/internal/exitcode"
	"golang.org/x/sys/unix"
)

// DefaultDir holds one lock file per instance. It is under /run, not
// stateDir, because:
//   - only root can reach it: in stateDir the instance could hold the flock
//     forever (blocking every setup) or swap the file for a symlink;
//   - /run is a tmpfs, so nothing stale survives a reboot, and flock(2) is
//     released by the kernel when the holder dies, even by kill -9.
//
// Under systemd with ProtectSystem=strict the setup unit needs /run/opencode
// writable (ReadWritePaths or RuntimeDirectory=opencode with
// RuntimeDirectoryPreserve=yes).
const DefaultDir = "/run/opencode"

// lockPoll is how often a waiting setup retries the lock.
const lockPoll = 100 * time.Millisecond

// Lock is the exclusive per-instance setup lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock of instance name in dir, waiting at most wait.
// Giving up is ExitTempFail: the other setup is still working, try later.
func Acquire(ctx context.Context, dir, name string, wait time.Duration, log *slog.Logger) (*Lock, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".lock")
	// O_CLOEXEC keeps the lock out of init scripts: a script left running
	// after setup died must not hold it.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	deadline := time.Now().Add(wait)
	logged := false
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, exitcode.Errorf(exitcode.TempFail, "lock %s: another setup of this instance still holds it after %s; try again when it has finished", path, wait)
		}
		if !logged && log != nil {
			log.Info("waiting for another setup of this instance to finish", "lock", path, "maxWait", wait.String())
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// Release drops the lock. The file stays: unlinking a lock file races with a
// waiter that already opened it, which would then lock a detached inode.
func (l *Lock) Release() error {
	return l.f.Close()
}

// ensureDir creates dir (0700) and checks that only the caller, usually
// root, can change it, so that no one can plant a lock file or symlink there.
func ensureDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create lock directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat lock directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("lock directory %s is not a directory; remove it", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("lock directory %s is owned by uid %d, not %d; remove it so that setup recreates it", dir, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("lock directory %s is writable by group or others (mode %04o); make it 0700", dir, st.Mode&0o7777)
	}
	return nil
}
