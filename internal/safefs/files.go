package safefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ocnix/ocnix/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Files that root writes inside stateDir live in a directory the instance
// owns, so every access here is relative to an already opened directory fd and
// never follows a symlink: a planted "opencode.json -> /etc/shadow" must make
// setup fail or replace the link, never read or write the target.

// owner is who a file or directory setup creates belongs to. A nil *Owner
// means "whoever creates it" (run, as the instance user).
type Owner struct {
	UID, GID int
}

// maxManagedFile bounds what ReadFileAt reads: every file setup manages is a
// few KiB, and the instance must not make root read a huge file.
const maxManagedFile = 1 << 20

// ErrNotRegular marks a managed path that holds something other than a file.
var ErrNotRegular = errors.New("is not a regular file")

// WriteFileAt replaces dir/name atomically (internal/atomicfile), owned by
// own (nil: whoever writes it).
func WriteFileAt(dir *os.File, name string, data []byte, mode os.FileMode, own *Owner) error {
	uid, gid := atomicfile.KeepOwner, atomicfile.KeepOwner
	if own != nil {
		uid, gid = own.UID, own.GID
	}
	return atomicfile.WriteAt(dir, name, data, mode, uid, gid)
}

// ReadFileAt reads dir/name without following a symlink and without blocking
// on a planted FIFO. It returns the content and the file's stat.
// A missing file is an error wrapping os.ErrNotExist.
func ReadFileAt(dir *os.File, name string) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, fmt.Errorf("open %s: is a symlink: %w", name, ErrNotRegular)
		}
		return nil, st, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("open %s: %w", name, ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManagedFile+1))
	if err != nil {
		return nil, st, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxManagedFile {
		return nil, st, fmt.Errorf("read %s: larger than %d bytes, which no file setup writes", name, maxManagedFile)
	}
	return data, st, nil
}

// EnsureFileAt makes dir/name hold exactly data with mode and owner, writing
// only when something differs so that setup run twice changes nothing. A
// non-file at name (a planted symlink, FIFO or directory) is replaced when it
// can be unlinked, which never touches what a symlink points to.
func EnsureFileAt(dir *os.File, name string, data []byte, mode os.FileMode, own *Owner) (changed bool, err error) {
	old, st, err := ReadFileAt(dir, name)
	switch {
	case err == nil:
		if bytes.Equal(old, data) && os.FileMode(st.Mode&0o7777) == mode.Perm() && (own == nil || (int(st.Uid) == own.UID && int(st.Gid) == own.GID)) {
			return false, nil
		}
	case errors.Is(err, ErrNotRegular):
		// rename(2) replaces a symlink or FIFO; a directory needs unlinking first.
		if uerr := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR); uerr != nil && !errors.Is(uerr, unix.ENOTDIR) && !errors.Is(uerr, unix.ENOENT) {
			return false, fmt.Errorf("replace %s: %w (remove it by hand)", name, uerr)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return false, err
	}
	return true, WriteFileAt(dir, name, data, mode, own)
}

// RemoveFileAt unlinks dir/name (a missing file is fine) and makes that
// durable, so that a stamp removed before a script runs stays removed after a
// crash.
func RemoveFileAt(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync directory after removing %s: %w", name, err)
	}
	return nil
}

// SweepTempFiles removes temp files that a killed WriteFileAt left in dir.
// Call it only while holding the instance lock: a temp file of a concurrent
// writer would be removed, and that writer's rename would fail (safely).
func SweepTempFiles(dir *os.File) error {
	// Read names through a dup so that dir's offset stays untouched.
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir.Name(), err)
	}
	d := os.NewFile(uintptr(fd), dir.Name())
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir.Name(), err)
	}
	for _, n := range names {
		if atomicfile.IsTemp(n) {
			if err := unix.Unlinkat(int(dir.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove leftover %s: %w", n, err)
			}
		}
	}
	return nil
}

// ReadTrustedFile reads dir/name and requires it to be a regular file that
// only root can write.
func ReadTrustedFile(dir *os.File, name string) ([]byte, error) {
	data, st, err := ReadFileAt(dir, name)
	if err != nil {
		return nil, err
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%s/%s is owned by uid %d with mode %04o, not root-only writable, so it is not trusted", dir.Name(), name, st.Uid, st.Mode&0o7777)
	}
	return data, nil
}
