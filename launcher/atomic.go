package launcher

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Files that root writes inside stateDir live in a directory the instance
// owns, so every access here is relative to an already opened directory fd and
// never follows a symlink: a planted "opencode.json -> /etc/shadow" must make
// setup fail or replace the link, never read or write the target.

// owner is who a file or directory setup creates belongs to. A nil *owner
// means "whoever creates it" (run, as the instance user).
type owner struct {
	uid, gid int
}

// tmpMarker is in the name of every temporary file writeFileAt creates, so
// that sweepTempFiles can find the ones a crash left behind.
const tmpMarker = ".ocnix-tmp-"

// maxManagedFile bounds what readFileAt reads: every file setup manages is a
// few KiB, and the instance must not make root read a huge file.
const maxManagedFile = 1 << 20

// errNotRegular marks a managed path that holds something other than a file.
var errNotRegular = errors.New("is not a regular file")

// writeFileAt replaces dir/name with data atomically: a temp file in the same
// directory (O_EXCL, so a planted link is never followed), fsync, rename over
// name, fsync of the directory. A reader sees the old or the new file, never a
// half-written one, even after kill -9 or a power cut.
func writeFileAt(dir *os.File, name string, data []byte, mode os.FileMode, own *owner) (err error) {
	tmp, err := tempName(name)
	if err != nil {
		return err
	}
	dfd := int(dir.Fd())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if own != nil {
		if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	// The umask may have narrowed the mode given to openat; set it exactly.
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, name, err)
	}
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync directory of %s: %w", name, err)
	}
	return nil
}

func tempName(name string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pick a temp name for %s: %w", name, err)
	}
	return "." + name + tmpMarker + hex.EncodeToString(b[:]), nil
}

// readFileAt reads dir/name without following a symlink and without blocking
// on a planted FIFO. It returns the content and the file's stat.
// A missing file is an error wrapping os.ErrNotExist.
func readFileAt(dir *os.File, name string) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, fmt.Errorf("open %s: is a symlink: %w", name, errNotRegular)
		}
		return nil, st, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("open %s: %w", name, errNotRegular)
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

// ensureFileAt makes dir/name hold exactly data with mode and owner, writing
// only when something differs so that setup run twice changes nothing. A
// non-file at name (a planted symlink, FIFO or directory) is replaced when it
// can be unlinked, which never touches what a symlink points to.
func ensureFileAt(dir *os.File, name string, data []byte, mode os.FileMode, own *owner) (changed bool, err error) {
	old, st, err := readFileAt(dir, name)
	switch {
	case err == nil:
		if bytes.Equal(old, data) && os.FileMode(st.Mode&0o7777) == mode.Perm() && (own == nil || (int(st.Uid) == own.uid && int(st.Gid) == own.gid)) {
			return false, nil
		}
	case errors.Is(err, errNotRegular):
		// rename(2) replaces a symlink or FIFO; a directory needs unlinking first.
		if uerr := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR); uerr != nil && !errors.Is(uerr, unix.ENOTDIR) && !errors.Is(uerr, unix.ENOENT) {
			return false, fmt.Errorf("replace %s: %w (remove it by hand)", name, uerr)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return false, err
	}
	return true, writeFileAt(dir, name, data, mode, own)
}

// removeFileAt unlinks dir/name (a missing file is fine) and makes that
// durable, so that a stamp removed before a script runs stays removed after a
// crash.
func removeFileAt(dir *os.File, name string) error {
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

// sweepTempFiles removes temp files that a killed writeFileAt left in dir.
// Call it only while holding the instance lock: a temp file of a concurrent
// writer would be removed, and that writer's rename would fail (safely).
func sweepTempFiles(dir *os.File) error {
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
		if strings.HasPrefix(n, ".") && strings.Contains(n, tmpMarker) {
			if err := unix.Unlinkat(int(dir.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove leftover %s: %w", n, err)
			}
		}
	}
	return nil
}
