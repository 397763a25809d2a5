// Package atomicfile replaces a file so that a reader, or the next boot
// after a crash or power cut, sees the old content or the new, never a
// mix or an empty file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data and mode. The data goes to a temporary
// file with a random name in the same directory (a rename is atomic only
// within one file system), which is fsynced before the rename, so the new
// name never points at blocks not yet on disk; the directory is fsynced
// after it, so the rename itself survives a power cut. On any failure the
// temporary file is removed and path is left as it was, except when only
// the final directory fsync fails: path then already holds data, but the
// caller learns that it may not survive a crash.
//
// The directory must exist. WriteFile follows a symlink in the directory
// part of path, and replaces (never follows) a symlink at path itself, so
// it is not for directories that someone less trusted than the caller can
// write to.
func WriteFile(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp opens with O_EXCL and mode 0600: nobody can read the
	// partial file, and a planted name is never followed.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err == nil {
			return
		}
		if !renamed {
			f.Close() // a second Close returns an error and does nothing
			os.Remove(tmp)
		}
		err = fmt.Errorf("write %s: %w", path, err)
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Chmod, not the mode of the create: the umask would narrow that.
	if err := f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
