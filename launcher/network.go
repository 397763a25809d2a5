package launcher

import (
	"fmt"
	"os"

	"github.com/ocnix/ocnix/netpolicy"
)

// ensureNetwork converges the instance's network to its spec: with isolation
// on, the netns, veth, addresses and nft rules exist exactly as planned; with
// it off, whatever an earlier spec created is removed, so that turning
// isolation off never leaves a stale namespace behind.
func ensureNetwork(s *Spec) error {
	p, err := buildNetwork(s)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	if !p.Enable {
		if err := netpolicy.Teardown(p); err != nil {
			return withCode(ExitOSErr, fmt.Errorf("remove the network of a non-isolated instance: %w", err))
		}
		return nil
	}
	if err := netpolicy.Ensure(p); err != nil {
		return withCode(ExitOSErr, fmt.Errorf("set up network namespace %s: %w", p.Netns, err))
	}
	return nil
}

// TeardownCmd removes the instance's network.
type TeardownCmd struct {
	ConfigFlag
}

func (c *TeardownCmd) Run(g *Globals) error {
	s, err := LoadFile(c.Config)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "instance %q: teardown needs root (it deletes a network namespace and nft tables)", s.Name)
	}
	p, err := buildNetwork(s)
	if err != nil {
		return withCode(ExitSpecInvalid, fmt.Errorf("instance %q: %w", s.Name, err))
	}
	if err := netpolicy.Teardown(p); err != nil {
		return withCode(ExitOSErr, fmt.Errorf("instance %q: teardown: %w", s.Name, err))
	}
	g.logger(s.Name).Info("network removed", "netns", p.Netns)
	return nil
}
