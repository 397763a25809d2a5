package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// pathRule is one PathRule opened and ready for landlock_add_rule.
type pathRule struct {
	path   string
	fd     int
	rights FSRights
}

// openPathRules opens every path of the plan with O_PATH, applying the
// missing-path policy (optional paths that vanished since Build are
// skipped, required ones are an error) and cutting rights down to file
// rights where the path is not a directory. The caller closes the fds.
//
// A path strictly beneath one of the instance's own read-write
// directories is opened with RESOLVE_NO_SYMLINKS: the instance could
// have replaced a component with a symlink to anywhere, and the rule
// (added while still root) would follow it. Other paths may go through
// symlinks (/run/current-system/sw, /etc on NixOS): only root can
// change those. Rules are added by fd, so nothing is resolved twice.
func openPathRules(l LandlockPlan, own []string) ([]pathRule, error) {
	var out []pathRule
	closeAll := func() {
		for _, r := range out {
			unix.Close(r.fd)
		}
	}
	for _, r := range l.Paths {
		fd, err := openRulePath(r.Path, own)
		if err != nil {
			if errors.Is(err, unix.ENOENT) && !r.Required {
				continue
			}
			closeAll()
			switch {
			case errors.Is(err, unix.ENOENT):
				return nil, fmt.Errorf("sandbox: %s path %q: does not exist (create it, or run setup first): %w", r.Kind, r.Path, fs.ErrNotExist)
			case errors.Is(err, unix.ELOOP):
				return nil, fmt.Errorf("sandbox: %s path %q: goes through a symlink beneath the instance's own directory %q, which the instance could point anywhere: %w", r.Kind, r.Path, strictlyBeneathAny(r.Path, own), err)
			}
			return nil, fmt.Errorf("sandbox: %s path %q: open: %w", r.Kind, r.Path, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			closeAll()
			return nil, fmt.Errorf("sandbox: %s path %q: stat: %w", r.Kind, r.Path, err)
		}
		rights := r.Rights
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Rights can only shrink here, never grow.
			rights &= rightsFile
		}
		if rights == 0 {
			unix.Close(fd)
			continue
		}
		out = append(out, pathRule{path: r.Path, fd: fd, rights: rights})
	}
	return out, nil
}

// openRulePath opens p with O_PATH. Beneath an own directory d, only
// the part after d must be free of symlinks (and stay beneath d); d
// itself and everything above it are root's and may be symlinks.
func openRulePath(p string, own []string) (int, error) {
	d := strictlyBeneathAny(p, own)
	if d == "" {
		return unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	dfd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	rel := strings.TrimPrefix(p, d+"/")
	for {
		fd, err := unix.Openat2(dfd, rel, &how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // the kernel asks to retry after a concurrent rename
		}
		return fd, err
	}
}

// strictlyBeneathAny returns the outermost own directory that p lies
// strictly beneath, or "". Outermost, so that a symlink in a nested own
// directory is caught too.
func strictlyBeneathAny(p string, own []string) string {
	best := ""
	for _, d := range own {
		if p != d && under(p, d) && (best == "" || len(d) < len(best)) {
			best = d
		}
	}
	return best
}

// checkPaths applies the missing-path and symlink policy without
// confining anything, so Run can report errors before forking.
func checkPaths(l LandlockPlan, own []string) error {
	rules, err := openPathRules(l, own)
	for _, r := range rules {
		unix.Close(r.fd)
	}
	return err
}

// applyLandlock restricts the calling OS thread with the plan. The
// caller must have locked the goroutine to its thread and must execve
// from it: the new program inherits this thread's domain, and other
// threads die at execve. Restricting one thread instead of all (psx
// on ABI < 8) saves several milliseconds of signalling at startup; the
// other threads only run the launcher's own code until execve.
//
// It is strict, not best effort: downgrade already cut the plan to
// this kernel's ABI (and explain said what that costs), so a kernel that
// cannot enforce it is an error, never a second, silent downgrade.
func applyLandlock(l LandlockPlan, own []string) error {
	if !l.keepsFSPromise() {
		return fmt.Errorf("sandbox: plan for Landlock ABI %d does not handle %v, so it cannot keep the filesystem allow-list (minimum ABI %d): %w", l.ABI, fsPromise&^l.HandledFS, MinLandlockABI, ErrLandlockTooOld)
	}
	paths, err := openPathRules(l, own)
	if err != nil {
		return err
	}
	defer func() {
		for _, r := range paths {
			unix.Close(r.fd)
		}
	}()
	var netRules []landlock.Rule
	for _, p := range l.Ports {
		if p.Rights&ll.AccessNetBindTCP != 0 {
			netRules = append(netRules, landlock.BindTCP(p.Port))
		}
	}
	cfg := landlock.Config{
		HandledAccessFS:  landlock.AccessFSSet(l.HandledFS),
		HandledAccessNet: landlock.AccessNetSet(l.HandledNet),
		Scoped:           landlock.ScopedSet(l.Scoped),
	}
	if l.LogSubprocesses {
		// Denials after execve are not audited by default, and the
		// target is all that runs after it.
		cfg = cfg.EnableLoggingForSubprocesses()
	}
	// go-landlock checks the config against the kernel's ABI and adds
	// the port rules; the path rules are added by fd below.
	fd, flags, err := cfg.NewRulesetFD(netRules...)
	if err != nil {
		return fmt.Errorf("sandbox: landlock ruleset (ABI %d): %w", l.ABI, err)
	}
	if fd < 0 {
		return bug(fmt.Errorf("landlock ruleset for ABI %d is empty", l.ABI))
	}
	defer unix.Close(fd)
	for _, r := range paths {
		attr := ll.PathBeneathAttr{AllowedAccess: uint64(r.rights), ParentFd: r.fd}
		if err := ll.LandlockAddPathBeneathRule(fd, &attr, 0); err != nil {
			return fmt.Errorf("sandbox: landlock: add rule for %q with %v: %w", r.path, r.rights, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: set no_new_privs: %w", err)
	}
	if err := ll.LandlockRestrictSelf(fd, flags); err != nil {
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("sandbox: landlock: too many nested Landlock domains (is the launcher itself sandboxed?): %w", err)
		}
		return fmt.Errorf("sandbox: landlock_restrict_self: %w", err)
	}
	return nil
}
