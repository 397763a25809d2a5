package launcher

import (
	"fmt"
	"os"

	"github.com/ocnix/ocnix/netpolicy"
)

// PreflightCmd re-checks, with root's privileges, what `run` as the instance
// user cannot see, right before the server starts: the unit runs it as
// ExecStartPre=+ so that an automatic restart after someone flushed the
// netns ruleset (or a setup that failed since) never starts a server with
// open egress or a stale config.
type PreflightCmd struct {
	ConfigFlag
}

func (c *PreflightCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "instance %q: preflight needs root (it reads the nft ruleset inside the instance's netns); run it as ExecStartPre=+ or with sudo", s.Name)
	}
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	sys := newApplier(c.Config, g.logger(s.Name), g.stderr)
	failed, why, err := sys.lastSetup(p.Layout)
	if err != nil {
		return withCode(ExitOSErr, fmt.Errorf("instance %q: read the last setup result: %w", s.Name, err))
	}
	if failed {
		return withCode(ExitInitScript, fmt.Errorf("instance %q: refusing to start: %s", s.Name, why))
	}
	if err := checkOpencodeConfig(sys, p); err != nil {
		return withCode(ExitInitScript, fmt.Errorf("instance %q: refusing to start: %w", s.Name, err))
	}
	if err := netpolicy.VerifyFilter(p.Network); err != nil {
		return withCode(ExitInitScript, fmt.Errorf("instance %q: refusing to start: %w", s.Name, err))
	}
	if err := netpolicy.VerifyPeerGuard(p.Network); err != nil {
		return withCode(ExitInitScript, fmt.Errorf("instance %q: refusing to start: %w", s.Name, err))
	}
	np := p.Network
	g.logger(s.Name).Info("preflight passed", "isolated", np.Enable)
	return nil
}
