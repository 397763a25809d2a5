package launcher

import (
	"fmt"
	"log/slog"
	"os"
)

// TeardownCmd removes the instance's network.
type TeardownCmd struct {
	ConfigFlag
}

func (c *TeardownCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "instance %q: teardown needs root (it deletes a network namespace and nft tables)", p.Instance)
	}
	log := g.logger(p.Instance)
	return teardownPlan(newApplier(c.Config, log, g.stderr), p, log)
}

// teardownPlan removes what setup made of p.Network. The state directory
// and the launcher's directory stay: they hold the instance's data and the
// record of its last setup.
func teardownPlan(sys applier, p *Plan, log *slog.Logger) error {
	if err := sys.teardownNetwork(p.Network); err != nil {
		return withCode(ExitOSErr, fmt.Errorf("instance %q: teardown: %w", p.Instance, err))
	}
	log.Info("network removed", "netns", p.Network.Netns)
	return nil
}
