package launcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ocnix/ocnix/internal/safefs"
	"golang.org/x/sys/unix"
)

// What the launcher trusts lives outside stateDir, in a directory the
// instance can read but never write:
//
//	LauncherDirBase            0755 root:root
//	LauncherDirBase/<name>/    0750 root:<group>
//	  opencode.json            0640 root:<group>  the server reads it (OPENCODE_CONFIG)
//	  last-setup.json          0640 root:<group>  run (as the instance user) reads it
//	  init-pre.sha256          0600 root:root     only setup reads stamps
//	  init-post.sha256         0600 root:root
//
// The one root file in stateDir is .ocnix-state-id (0600 root), which ties the
// stamps to the stateDir they set up (initscripts.go); the instance may
// delete it, never forge it.
//
// /var/lib, not /run: the stamps must outlive a reboot (or every boot reruns
// the init scripts), and a record that outlives one is harmless because the
// setup unit runs again before the server on every boot.
//
// Before this directory existed the same files lived in stateDir, which the
// instance owns, so it could forge a successful setup, skip a changed init
// script or loosen its own opencode.json. Setup removes those old files
// without reading them (migrateLegacy).

// LauncherDirBase holds one private directory per instance.
const LauncherDirBase = "/var/lib/opencode/launcher"

// privateDirFor is the instance's private directory.
func privateDirFor(name string) string { return filepath.Join(LauncherDirBase, name) }

// Modes of the private directory and its files.
const (
	privateDirMode   = 0o750 // root:<group>; the group reads opencode.json and the record
	privateReadMode  = 0o640 // root:<group>
	privateStampMode = 0o600 // root:root
)

// openPrivateDir opens the instance's private directory. With gid >= 0
// (setup, as root) it creates the base and the directory when missing and
// fixes their owner and mode; with gid < 0 the directory must exist.
//
// Either way everything from / down to the directory must be owned by root
// and writable by nobody else, and the directory itself must be owned by
// root and writable by root alone: otherwise what it holds is not the
// launcher's word and run must not trust it.
func openPrivateDir(path string, gid int) (*os.File, error) {
	base := filepath.Dir(path)
	if gid >= 0 {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", base, err)
		}
	}
	real, err := filepath.EvalSymlinks(base)
	if err != nil {
		return nil, fmt.Errorf("launcher directory %s: %w", base, err)
	}
	if err := safefs.CheckSafeAncestors(real); err != nil {
		return nil, fmt.Errorf("launcher directory %s: %w", base, err)
	}
	bfd, err := unix.Open(real, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", base, err)
	}
	defer unix.Close(bfd)
	name := filepath.Base(path)
	if gid >= 0 {
		if err := unix.Mkdirat(bfd, name, privateDirMode); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
	}
	fd, err := unix.Openat(bfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%s is not a directory; remove it so that setup can create it", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if gid >= 0 {
		if st.Uid != 0 || int(st.Gid) != gid {
			if err := unix.Fchown(fd, 0, gid); err != nil {
				d.Close()
				return nil, fmt.Errorf("chown %s to root:%d: %w", path, gid, err)
			}
		}
		if st.Mode&0o7777 != privateDirMode {
			if err := unix.Fchmod(fd, privateDirMode); err != nil {
				d.Close()
				return nil, fmt.Errorf("chmod %s: %w", path, err)
			}
		}
		return d, nil
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		d.Close()
		return nil, errorf(ExitPermission, "%s is owned by uid %d with mode %04o; only root may write it, so it is not trusted; run setup, which fixes it", path, st.Uid, st.Mode&0o7777)
	}
	return d, nil
}

// Names that older releases kept in stateDir, which the instance can write.
const (
	legacyMetaDir    = ".ocnix"
	legacyConfigFile = "config/opencode/opencode.json"
)

var legacyMetaFiles = []string{"init-pre.sha256", "init-post.sha256", lastSetupFile}

// migrateLegacy removes what older releases kept in stateDir. Their content
// is never read: the instance could have written anything there. Removing
// them keeps an old opencode.json from being loaded as opencode's global
// config and keeps operators from reading a forged record by hand.
// Anything else the instance put in .ocnix stays; it is its own directory.
func (h *hostApplier) migrateLegacy(stateDir string) error {
	meta, err := h.root.OpenDir(filepath.Join(stateDir, legacyMetaDir))
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT):
	case err != nil:
		// A symlink or a file in its place: the instance's doing; ignore it.
		h.log.Debug("ignoring the old bookkeeping dir", "dir", legacyMetaDir, "err", err)
	default:
		for _, n := range legacyMetaFiles {
			if err := safefs.RemoveFileAt(meta, n); err != nil && !errors.Is(err, unix.EISDIR) {
				meta.Close()
				return withCode(ExitOSErr, fmt.Errorf("remove the old %s/%s: %w", legacyMetaDir, n, err))
			}
		}
		if err := safefs.SweepTempFiles(meta); err != nil {
			meta.Close()
			return withCode(ExitOSErr, err)
		}
		meta.Close()
		if err := unix.Unlinkat(int(h.root.Dir().Fd()), legacyMetaDir, unix.AT_REMOVEDIR); err == nil {
			h.log.Info("removed the old bookkeeping dir from stateDir; it now lives in "+h.priv.Name(), "dir", filepath.Join(stateDir, legacyMetaDir))
		}
	}
	// The old opencode.json sits in opencode's own global config dir, where
	// the instance may keep a config of its own later: remove it only on the
	// first setup in this layout (no record yet).
	var rst unix.Stat_t
	if err := unix.Fstatat(int(h.priv.Fd()), lastSetupFile, &rst, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	cfgDir, err := h.root.OpenDir(filepath.Dir(filepath.Join(stateDir, legacyConfigFile)))
	if err != nil {
		return nil // setup creates it as a directory right after; nothing old to remove
	}
	defer cfgDir.Close()
	var lst unix.Stat_t
	if err := unix.Fstatat(int(cfgDir.Fd()), "opencode.json", &lst, unix.AT_SYMLINK_NOFOLLOW); err == nil && lst.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := safefs.RemoveFileAt(cfgDir, "opencode.json"); err != nil {
			return withCode(ExitOSErr, fmt.Errorf("remove the old %s: %w", legacyConfigFile, err))
		}
		h.log.Info("removed the old opencode.json from stateDir; the server reads "+filepath.Join(h.priv.Name(), "opencode.json"), "old", filepath.Join(stateDir, legacyConfigFile))
	}
	return nil
}

// readPrivateFile reads a file of an instance's private directory, which
// must be root's from / down (openPrivateDir) and the file root's alone.
func readPrivateFile(path string) ([]byte, error) {
	priv, err := openPrivateDir(filepath.Dir(path), -1)
	if err != nil {
		return nil, err
	}
	defer priv.Close()
	return safefs.ReadTrustedFile(priv, filepath.Base(path))
}
