// Package safefs is how root touches directories that a less trusted user
// owns or could change: every access goes through an open directory fd with
// openat(O_NOFOLLOW), owners and modes change through fds, files are written
// atomically and read without blocking on a planted FIFO.
package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocnix/ocnix/internal/exitcode"
	"golang.org/x/sys/unix"
)

// The instance owns everything below stateDir and may have planted symlinks,
// FIFOs or renamed directories there while it ran. Root therefore never
// resolves a path below stateDir by name: it opens stateDir once, from a
// parent that only root can change, and walks down with openat(O_NOFOLLOW),
// changing owners and modes through the opened fds (fchown, fchmod).

// Root is an open stateDir.
type Root struct {
	dir  *os.File
	path string
}

func (r *Root) Close() error { return r.dir.Close() }

// Dir is the open stateDir.
func (r *Root) Dir() *os.File { return r.dir }

// OpenRoot opens stateDir. With own set (root, during setup) it creates
// it if missing and makes it owned by own with mode 0700; otherwise it must
// exist. Either way the ancestors of stateDir must be safe (see
// CheckSafeAncestors) and stateDir itself must not be a symlink.
func OpenRoot(path string, own *Owner) (*Root, error) {
	if own != nil {
		// Like systemd's StateDirectory=: missing ancestors are created by
		// root, 0755, so they pass CheckSafeAncestors.
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("stateDir %s: create its parent: %w", path, err)
		}
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("stateDir %s: resolve its parent: %w", path, err)
	}
	if err := CheckSafeAncestors(parent); err != nil {
		return nil, fmt.Errorf("stateDir %s: %w", path, err)
	}
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("stateDir %s: open its parent %s: %w", path, parent, err)
	}
	p := os.NewFile(uintptr(pfd), parent)
	defer p.Close()
	// Below stateDir a symlink is the instance's doing and gets replaced;
	// stateDir itself sits in a root-only directory, so a link there is the
	// operator's and must be neither followed nor removed.
	var lst unix.Stat_t
	if err := unix.Fstatat(pfd, filepath.Base(path), &lst, unix.AT_SYMLINK_NOFOLLOW); err == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil, exitcode.Errorf(exitcode.Permission, "stateDir %s is a symlink; set stateDir to the directory it points to (setup never follows a link it did not make)", path)
	}
	var d *os.File
	if own != nil {
		d, err = EnsureDirAt(p, filepath.Base(path), own)
	} else {
		d, err = OpenDirAt(p, filepath.Base(path))
	}
	if err != nil {
		return nil, fmt.Errorf("stateDir %s: %w", path, err)
	}
	return &Root{dir: d, path: path}, nil
}

// CheckSafeAncestors requires that only root can change dir and the path to
// it: each component is owned by root and not writable by group or others,
// unless sticky (like /tmp, where others cannot rename what root made).
// Otherwise whoever can write an ancestor could swap stateDir for a symlink
// between the check and the use. dir must already be free of symlinks.
func CheckSafeAncestors(dir string) error {
	p := dir
	for {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat ancestor %s: %w", p, err)
		}
		switch {
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("ancestor %s is not a directory", p)
		case st.Uid != 0:
			return exitcode.Errorf(exitcode.Permission, "ancestor %s is owned by uid %d, not root, so that user could swap what lies below for a symlink; put it under a root-owned directory such as /var/lib", p, st.Uid)
		case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
			return exitcode.Errorf(exitcode.Permission, "ancestor %s is writable by group or others (mode %04o) and not sticky; make it 0755", p, st.Mode&0o7777)
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}

// OpenDirAt opens parent/name as a directory, refusing a symlink.
func OpenDirAt(parent *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("open %s: is a symlink; setup replaces it, or remove it by hand", name)
		case errors.Is(err, unix.ENOTDIR):
			return nil, fmt.Errorf("open %s: is not a directory", name)
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(parent.Name(), name)), nil
}

// EnsureDirAt makes parent/name a directory owned by own with mode 0700 and
// returns it open. A symlink at name is removed and replaced (unlinkat never
// follows it); any other non-directory is an error, because it may hold the
// instance's data.
func EnsureDirAt(parent *os.File, name string, own *Owner) (*os.File, error) {
	pfd := int(parent.Fd())
	// A racing instance can swap the entry between mkdir and open; a few
	// rounds are enough for an honest filesystem and bound a hostile one.
	for range 3 {
		if err := unix.Mkdirat(pfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			d := os.NewFile(uintptr(fd), filepath.Join(parent.Name(), name))
			if err := fixDir(d, own); err != nil {
				d.Close()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return d, nil
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("stat %s: %w", name, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return nil, fmt.Errorf("%s exists and is not a directory; move it away so that setup can create the directory", filepath.Join(parent.Name(), name))
		}
		if err := unix.Unlinkat(pfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("remove the symlink at %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("create %s: it keeps being replaced while setup runs", name)
}

// fixDir sets owner and mode 0700 on an open directory, touching only what
// differs so that a second setup leaves ctime alone.
func fixDir(d *os.File, own *Owner) error {
	var st unix.Stat_t
	fd := int(d.Fd())
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if int(st.Uid) != own.UID || int(st.Gid) != own.GID {
		if err := unix.Fchown(fd, own.UID, own.GID); err != nil {
			return fmt.Errorf("chown to %d:%d: %w", own.UID, own.GID, err)
		}
	}
	if st.Mode&0o7777 != 0o700 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fmt.Errorf("chmod 0700: %w", err)
		}
	}
	return nil
}

// components splits an absolute path below root into its names.
func (r *Root) components(abs string) ([]string, error) {
	rel, err := filepath.Rel(r.path, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return nil, exitcode.Bugf("%w", fmt.Errorf("%s is not below stateDir %s", abs, r.path))
	}
	if rel == "." {
		return nil, nil
	}
	return strings.Split(rel, "/"), nil
}

// walk opens the directory abs below the root, one component at a time, never
// following a symlink. With own set it creates and fixes each component.
func (r *Root) walk(abs string, own *Owner) (*os.File, error) {
	names, err := r.components(abs)
	if err != nil {
		return nil, err
	}
	// Dup the root so that the caller may close what walk returns.
	fd, err := unix.Openat(int(r.dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen stateDir %s: %w", r.path, err)
	}
	cur := os.NewFile(uintptr(fd), r.path)
	for _, n := range names {
		var next *os.File
		if own != nil {
			next, err = EnsureDirAt(cur, n, own)
		} else {
			next, err = OpenDirAt(cur, n)
		}
		cur.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", abs, err)
		}
		cur = next
	}
	return cur, nil
}

// openDir opens an existing directory below the root without following links.
func (r *Root) OpenDir(abs string) (*os.File, error) { return r.walk(abs, nil) }

// ensureDir creates abs and its missing parents below the root, owned by own, 0700.
func (r *Root) EnsureDir(abs string, own *Owner) (*os.File, error) {
	if own == nil {
		return nil, exitcode.Bugf("%w", errors.New("ensureDir needs an owner"))
	}
	return r.walk(abs, own)
}
