// Package atomicfile replaces a file so that a reader, or the next boot
// after a crash or power cut, sees the old content or the new, never a
// mix or an empty file. It is the one atomic write of ocnix: the launcher's
// files in directories it opened by fd, and netpolicy's files by path.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// TmpMarker is in the name of every temporary file, so that a sweep can
// find the ones a crash left behind (IsTemp).
const TmpMarker = ".ocnix-tmp-"

// IsTemp reports whether name is a temporary file of WriteAt.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, TmpMarker)
}

// KeepOwner as uid or gid leaves that id as the creator's.
const KeepOwner = -1

// WriteAt replaces dir/name with data, mode and owner uid:gid (KeepOwner:
// the caller's). The data goes to a temporary file with a random name in
// the same directory, created with O_EXCL|O_NOFOLLOW so that a planted name
// is never followed, written, chowned, chmodded (the umask would narrow the
// create mode), fsynced, and renamed over name; then the directory is
// fsynced, so the rename survives a power cut. renameat replaces a symlink
// at name, never follows it. On any failure before the rename the temporary
// file is removed and name is left as it was.
func WriteAt(dir *os.File, name string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	tmp, err := tempName(name)
	if err != nil {
		return err
	}
	dfd := int(dir.Fd())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close() // a second Close returns an error and does nothing
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if uid != KeepOwner || gid != KeepOwner {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
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
	renamed = true
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync the directory of %s: %w", name, err)
	}
	return nil
}

// WriteFile is WriteAt for a path, owned by the caller. The directory must
// exist; a symlink in the directory part of path is followed, so it is not
// for directories that someone less trusted than the caller can write to
// (open those by fd and use WriteAt).
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := WriteAt(d, base, data, mode, KeepOwner, KeepOwner); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func tempName(name string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pick a temp name for %s: %w", name, err)
	}
	return "." + name + TmpMarker + hex.EncodeToString(b[:]), nil
}
