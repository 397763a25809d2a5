package sandbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// landlockRules turns the plan into go-landlock rules, applying the
// missing-path policy (optional paths that vanished since Build are
// skipped, required ones are an error) and re-checking file versus
// directory now, at run time.
func landlockRules(l LandlockPlan) ([]landlock.Rule, error) {
	var rules []landlock.Rule
	for _, r := range l.Paths {
		fi, err := os.Stat(r.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && !r.Required {
				continue
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("sandbox: %s path %q: does not exist (create it, or run setup first): %w", r.Kind, r.Path, err)
			}
			return nil, fmt.Errorf("sandbox: %s path %q: %w", r.Kind, r.Path, err)
		}
		rights := r.Rights
		if !fi.IsDir() {
			// Rights can only shrink here, never grow.
			rights &= rightsFile
		}
		if rights == 0 {
			continue
		}
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(rights), r.Path))
	}
	for _, p := range l.Ports {
		if p.Rights&NetRights(1) != 0 { // bind_tcp
			rules = append(rules, landlock.BindTCP(p.Port))
		}
	}
	return rules, nil
}

// applyLandlock restricts the calling OS thread with the plan. The
// caller must have locked the goroutine to its thread and must execve
// from it: the new program inherits this thread's domain, and other
// threads die at execve. Restricting one thread instead of all (psx
// on ABI < 8) saves several milliseconds of signalling at startup; the
// other threads only run the launcher's own code until execve.
//
// It is strict, not best effort: the plan was built for this kernel's
// ABI, and a kernel that cannot enforce it is an error, never a silent
// downgrade.
func applyLandlock(l LandlockPlan) error {
	if l.ABI < MinLandlockABI {
		return fmt.Errorf("sandbox: plan is for Landlock ABI %d, below the minimum %d: %w", l.ABI, MinLandlockABI, ErrLandlockTooOld)
	}
	rules, err := landlockRules(l)
	if err != nil {
		return err
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
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return fmt.Errorf("sandbox: landlock ruleset (ABI %d): %w", l.ABI, err)
	}
	if fd < 0 {
		return bug(fmt.Errorf("landlock ruleset for ABI %d is empty", l.ABI))
	}
	defer unix.Close(fd)
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
