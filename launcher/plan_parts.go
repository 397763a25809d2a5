package launcher

import (
	"fmt"

	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// SandboxSection and NetworkSection are the sandbox and network plans as the
// packages that enforce them build them; explain prints them verbatim.
type (
	SandboxSection = sandbox.Plan
	NetworkSection = netpolicy.Plan
)

// sandboxInput maps the spec onto the sandbox package's input. The server's
// own executable is granted read+execute on its file alone, so that a command
// outside the system baseline (say /opt/…/opencode) runs without opening its
// whole directory.
func sandboxInput(s *Spec, argv0 string) sandbox.Input {
	cmd := []string{s.Command[0]}
	if argv0 != "" && argv0 != s.Command[0] {
		cmd = append(cmd, argv0)
	}
	return sandbox.Input{
		Instance:       s.Name,
		User:           s.User,
		Group:          s.Group,
		Directory:      s.Directory,
		StateDir:       s.StateDir,
		TmpDir:         layoutFor(s).Tmp,
		ReadWritePaths: s.Sandbox.ReadWritePaths,
		ReadOnlyPaths:  s.Sandbox.ReadOnlyPaths,
		LauncherDir:    privateDirFor(s.Name),
		ExecPaths:      s.Path,
		CommandPaths:   cmd,
		UnixSockets:    s.Sandbox.UnixSockets.Allow,
		ListenPort:     s.Listen.Port,
		BindPorts:      s.Sandbox.AllowBindPorts,
		SharedNetwork:  !s.NetworkIsolation.Enable,
	}
}

// netInput maps the spec onto the netpolicy package's input.
func netInput(s *Spec) netpolicy.Input {
	return netpolicy.Input{
		Instance:      s.Name,
		Enable:        s.NetworkIsolation.Enable,
		ListenAddress: s.Listen.Address,
		ListenPort:    s.Listen.Port,
		AllowCIDRs:    s.NetworkIsolation.OutboundAllowCidrs,
		Subnet:        s.NetworkIsolation.Subnet,
		Nameservers:   s.NetworkIsolation.Nameservers,
		AllowDomains:  s.NetworkIsolation.OutboundAllowDomains,
	}
}

func buildSandbox(s *Spec, h Host, argv0 string) (sandbox.Plan, error) {
	return sandbox.Build(sandboxInput(s, argv0), h.Sandbox)
}

// buildNetwork needs the host's resolv.conf only when isolation is on and
// no nameservers are given; then a host whose file cannot be read is an error
// of this plan, and only of this plan.
func buildNetwork(s *Spec, h Host) (netpolicy.Plan, error) {
	in := netInput(s)
	in.UID = h.UID
	if h.NetErr != "" && in.Enable && len(in.Nameservers) == 0 {
		return netpolicy.Plan{}, fmt.Errorf("%s; or set networkIsolation.nameservers", h.NetErr)
	}
	return netpolicy.Build(in, h.Net)
}
