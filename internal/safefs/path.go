package safefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Files that root reads on an instance's behalf by a path from the spec
// (environmentFile, init scripts) may have been placed, by mistake, in a
// tree the instance can write: `directory/.env`. Opening such a path by
// name lets the instance swap the file for a symlink to a root-only file
// (its content would land in the instance's environment), or for a FIFO
// or /dev/zero (root would wait or read forever). OpenTrustedPath walks the
// path one component at a time with openat and trusts only what root alone
// can change.

// ErrUntrusted marks a path that someone other than root could change or
// redirect, so root must not read through it.
var ErrUntrusted = errors.New("is not trusted")

// maxLinks bounds the symlinks one walk follows, as the kernel's MAXSYMLINKS.
const maxLinks = 40

// OpenTrustedPath opens the regular file at the absolute path for reading,
// resolving it component by component from "/":
//   - every directory on the way is owned by root and not writable by group
//     or others, unless sticky (like /tmp);
//   - a symlink is followed only if root owns it (it then lies in such a
//     directory, so root made it: /run/secrets -> /run/secrets.d/1 of
//     sops-nix); any other link is refused, never followed;
//   - in a sticky directory, what the walk passes (a directory, a link, the
//     file) must be root's, since anyone may create entries there;
//   - the file itself is opened with O_NOFOLLOW|O_NONBLOCK and must be a
//     regular file, so a FIFO, a device or a socket is refused before it is
//     opened and a swap between the check and the open is caught by fstat.
//
// The file may belong to any user: whoever owns it chose its content, but
// nobody but root can put something else at its path.
func OpenTrustedPath(path string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	if !filepath.IsAbs(path) {
		return nil, st, fmt.Errorf("%s is not an absolute path", path)
	}
	root, err := unix.Open("/", oPath|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, fmt.Errorf("open /: %w", err)
	}
	// stack holds the directories walked so far, "/" first: ".." in a link
	// target pops, an absolute target starts again from "/".
	type dir struct {
		fd     int
		path   string
		sticky bool // group or other writable and sticky
	}
	stack := []dir{{fd: root, path: "/"}}
	defer func() {
		for _, d := range stack {
			unix.Close(d.fd)
		}
	}()
	if err := checkDirStat(root, "/", &stack[0].sticky); err != nil {
		return nil, st, err
	}
	parts := splitPath(path)
	links := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		cur := stack[len(stack)-1]
		switch name {
		case ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(cur.fd)
				stack = stack[:len(stack)-1]
			}
			continue
		}
		here := filepath.Join(cur.path, name)
		var lst unix.Stat_t
		if err := unix.Fstatat(cur.fd, name, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, st, fmt.Errorf("%s: %w", here, os.ErrNotExist)
			}
			return nil, st, fmt.Errorf("stat %s: %w", here, err)
		}
		if lst.Mode&unix.S_IFMT == unix.S_IFLNK {
			if lst.Uid != 0 {
				return nil, st, fmt.Errorf("%s is a symlink owned by uid %d, which root does not follow (that user could point it at any root-only file); point the key at the file itself in a root-owned directory: %w", here, lst.Uid, ErrUntrusted)
			}
			if links++; links > maxLinks {
				return nil, st, fmt.Errorf("%s: too many levels of symbolic links", path)
			}
			target, err := readlinkat(cur.fd, name)
			if err != nil {
				return nil, st, fmt.Errorf("read link %s: %w", here, err)
			}
			if filepath.IsAbs(target) {
				for _, d := range stack[1:] {
					unix.Close(d.fd)
				}
				stack = stack[:1]
			}
			parts = append(splitPath(target), parts...)
			continue
		}
		if cur.sticky && lst.Uid != 0 {
			return nil, st, fmt.Errorf("%s is owned by uid %d in the shared directory %s, where that user could replace it; move it to a root-owned directory: %w", here, lst.Uid, cur.path, ErrUntrusted)
		}
		if len(parts) > 0 {
			if lst.Mode&unix.S_IFMT != unix.S_IFDIR {
				return nil, st, fmt.Errorf("%s is not a directory", here)
			}
			fd, err := unix.Openat(cur.fd, name, oPath|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, st, fmt.Errorf("open %s: %w", here, err)
			}
			d := dir{fd: fd, path: here}
			stack = append(stack, d)
			if err := checkDirStat(fd, here, &stack[len(stack)-1].sticky); err != nil {
				return nil, st, err
			}
			continue
		}
		// The file. Refuse a non-file before opening it: opening a device
		// can have side effects even with O_NONBLOCK.
		if lst.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, st, fmt.Errorf("%s is a %s, not a regular file: %w", here, fileType(uint32(lst.Mode)), ErrNotRegular)
		}
		fd, err := unix.Openat(cur.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ELOOP) {
				return nil, st, fmt.Errorf("%s became a symlink while it was opened: %w", here, ErrUntrusted)
			}
			return nil, st, fmt.Errorf("open %s: %w", here, err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, st, fmt.Errorf("stat %s: %w", here, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return nil, st, fmt.Errorf("%s is a %s, not a regular file: %w", here, fileType(uint32(st.Mode)), ErrNotRegular)
		}
		return os.NewFile(uintptr(fd), here), st, nil
	}
	return nil, st, fmt.Errorf("%s names a directory, not a file: %w", path, ErrNotRegular)
}

// ReadTrustedPath reads the file OpenTrustedPath opens, at most max bytes:
// a bigger file is an error, never silently cut.
func ReadTrustedPath(path string, max int64) ([]byte, error) {
	f, _, err := OpenTrustedPath(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, max)
}

// ReadRegularFile reads path as its caller may (links followed), but only a
// regular file and at most max bytes, without blocking on a FIFO. It is the
// read for callers that are not root: they escalate nothing by following a
// link, but a planted FIFO or /dev/zero must still not hang them.
func ReadRegularFile(path string, max int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is a %s, not a regular file: %w", path, fileType(uint32(st.Mode)), ErrNotRegular)
	}
	return readBounded(f, max)
}

func readBounded(f *os.File, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name(), max)
	}
	return data, nil
}

// checkDirStat requires the open directory fd to be root's and writable by
// nobody else, or sticky (then *sticky is set: its entries need checking).
func checkDirStat(fd int, path string, sticky *bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	switch {
	case st.Uid != 0:
		return fmt.Errorf("directory %s is owned by uid %d, not root, so that user could swap what lies below for a symlink; move the file to a root-owned directory such as /run/secrets or /etc: %w", path, st.Uid, ErrUntrusted)
	case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
		return fmt.Errorf("directory %s is writable by group or others (mode %04o), so they could swap what lies below for a symlink; make it 0755 or move the file: %w", path, st.Mode&0o7777, ErrUntrusted)
	}
	*sticky = st.Mode&0o022 != 0
	return nil
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	if n >= len(buf) {
		return "", errors.New("link target too long")
	}
	return string(buf[:n]), nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "special file"
}
