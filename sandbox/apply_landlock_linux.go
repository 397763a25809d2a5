package sandbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/landlock-lsm/go-landlock/landlock"
)

// landlockRules turns the plan into go-landlock rules, applying the
// missing-path policy and re-checking file versus directory now, at
// run time.
func landlockRules(l LandlockPlan) ([]landlock.Rule, []string, error) {
	var rules []landlock.Rule
	var skipped []string
	for _, r := range l.Paths {
		fi, err := os.Stat(r.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && !r.Required {
				skipped = append(skipped, r.Path)
				continue
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, fmt.Errorf("sandbox: %s path %q: does not exist (create it, or run setup first): %w", r.Kind, r.Path, err)
			}
			return nil, nil, fmt.Errorf("sandbox: %s path %q: %w", r.Kind, r.Path, err)
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
	return rules, skipped, nil
}

// applyLandlock restricts this process (all threads) with the plan. It
// is strict, not best effort: the plan was built for this kernel's ABI,
// and a kernel that cannot enforce it is an error, never a silent
// downgrade.
func applyLandlock(l LandlockPlan) ([]string, error) {
	if l.ABI < MinLandlockABI {
		return nil, fmt.Errorf("sandbox: plan is for Landlock ABI %d, below the minimum %d: %w", l.ABI, MinLandlockABI, ErrLandlockTooOld)
	}
	rules, skipped, err := landlockRules(l)
	if err != nil {
		return nil, err
	}
	cfg := landlock.Config{
		HandledAccessFS:  landlock.AccessFSSet(l.HandledFS),
		HandledAccessNet: landlock.AccessNetSet(l.HandledNet),
		Scoped:           landlock.ScopedSet(l.Scoped),
	}
	if err := cfg.Restrict(rules...); err != nil {
		return nil, fmt.Errorf("sandbox: apply landlock (ABI %d): %w", l.ABI, err)
	}
	return skipped, nil
}
