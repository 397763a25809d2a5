package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ocnix/ocnix/sandbox"
)

// Plan is everything run would do, as plain data: built by buildPlan from a
// spec and host facts with no side effects, printed by explain and run
// --dry-run, and compared in unit tests without root.
type Plan struct {
	Instance        string     `json:"instance"`
	User            string     `json:"user"`
	Group           string     `json:"group"`
	Directory       string     `json:"directory"`
	Listen          string     `json:"listen"` // address:port the server binds
	Argv            []string   `json:"argv"`
	Env             []EnvEntry `json:"env"`
	EnvironmentFile string     `json:"environmentFile,omitempty"`
	// EnvironmentCredential is the systemd credential id run reads instead
	// of EnvironmentFile when the unit passes the file with LoadCredential=
	// (credentials.go); set when EnvironmentFile is.
	EnvironmentCredential string         `json:"environmentCredential,omitempty"`
	Layout                Layout         `json:"layout"`
	OpencodeConfig        map[string]any `json:"opencodeConfig"`
	Setup                 SetupSection   `json:"setup"`
	Sandbox               SandboxSection `json:"sandbox"`
	Network               NetworkSection `json:"network"`
	Warnings              []string       `json:"warnings,omitempty"`
}

// buildPlan is pure: the same spec and host always give the same plan.
func buildPlan(s *Spec, h Host, cmd []string) (*Plan, error) {
	argv := serverArgv(s)
	if len(cmd) > 0 {
		argv = append([]string(nil), cmd...)
	}
	// The sandbox comes first: opencode.json's path permissions are
	// derived from its Landlock rules (sandboxPermissions).
	sb, sbErr := buildSandbox(s, h, argv[0])
	if sbErr != nil && !errors.Is(sbErr, sandbox.ErrLandlockTooOld) {
		return nil, named(s.Name, sbErr)
	}
	cfg := composeConfig(s, sb)
	p := &Plan{
		Instance:        s.Name,
		User:            s.User,
		Group:           s.Group,
		Directory:       s.Directory,
		Listen:          net.JoinHostPort(s.Listen.Address, strconv.Itoa(s.Listen.Port)),
		Argv:            argv,
		Env:             baseEnv(s, h, cfg),
		EnvironmentFile: s.EnvironmentFile,
		Layout:          layoutFor(s),
		OpencodeConfig:  cfg,
		Sandbox:         sb,
	}
	if s.EnvironmentFile != "" {
		p.EnvironmentCredential = EnvFileCredential
	}
	if sbErr != nil {
		// A fact of this host, not of the spec: check must pass on a Nix
		// builder with an old kernel, and explain must still show the plan.
		// run refuses to start (sandbox.Run checks the ABI again).
		p.Warnings = append(p.Warnings, sbErr.Error())
	}
	config, err := renderConfig(p.OpencodeConfig)
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", s.Name, err)
	}
	p.Setup = buildSetup(s, p.Layout, h, config)
	nw, err := buildNetwork(s, h)
	if err != nil {
		return nil, named(s.Name, err)
	}
	p.Network = nw
	p.Warnings = append(p.Warnings, ephemeralProblems(s, h.EphemeralPorts)...)
	if a, err := netip.ParseAddr(s.Listen.Address); err == nil && !a.IsLoopback() {
		if _, ok := s.Environment["OPENCODE_SERVER_PASSWORD"]; !ok && s.EnvironmentFile == "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("listen.address %s is not loopback and no OPENCODE_SERVER_PASSWORD can be set (no environmentFile): the agent's API would be open to the network", s.Listen.Address))
		}
	}
	if s.NetworkIsolation.Enable {
		p.Warnings = append(p.Warnings, nameServiceWarnings(s.Sandbox.UnixSockets.Allow)...)
	}
	if !s.NetworkIsolation.Enable && len(s.NetworkIsolation.OutboundAllowCidrs) > 0 {
		p.Warnings = append(p.Warnings, "networkIsolation.outboundAllowCidrs is set but networkIsolation.enable is false: no egress filter is in force")
	}
	if !s.NetworkIsolation.Enable && len(s.NetworkIsolation.OutboundAllowDomains) > 0 {
		p.Warnings = append(p.Warnings, "networkIsolation.outboundAllowDomains is set but networkIsolation.enable is false: no egress filter is in force")
	}
	return p, nil
}

// named prefixes err with the instance, unless it is a list of problems,
// which names it already.
func named(instance string, err error) error {
	var ps *Problems
	if errors.As(err, &ps) {
		return err
	}
	return fmt.Errorf("instance %q: %w", instance, err)
}

// JSON renders the plan for explain --json. Secret values are never in a Plan.
func (p *Plan) JSON() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}

// String renders the plan for humans.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s (user %s, group %s)\n", p.Instance, p.User, p.Group)
	fmt.Fprintf(&b, "\n# argv (cwd %s)\n", p.Directory)
	for _, a := range p.Argv {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	b.WriteString("\n# environment (values from environmentFile are never shown)\n")
	for _, e := range p.Env {
		fmt.Fprintf(&b, "  %s=%s  [%s]\n", e.Name, e.Value, e.Source)
	}
	if p.EnvironmentFile != "" {
		fmt.Fprintf(&b, "  then the variables of %s, read by run at start  [environmentFile]\n", p.EnvironmentFile)
		fmt.Fprintf(&b, "    (from $CREDENTIALS_DIRECTORY/%s instead when that exists: the unit passes the file with\n     LoadCredential=%s:%s, so it can stay root-only)\n", p.EnvironmentCredential, p.EnvironmentCredential, p.EnvironmentFile)
	}
	b.WriteString(p.Setup.String())
	cfg, _ := json.MarshalIndent(p.OpencodeConfig, "  ", "  ")
	fmt.Fprintf(&b, "\n# opencode.json\n  %s\n", cfg)
	b.WriteString("  permission.external_directory and permission.read are derived from the sandbox's Landlock rules:\n" +
		"  allow where the instance may read, deny elsewhere, so no tool call waits on a prompt the kernel decides;\n" +
		"  opencodeConfig's keys win over them\n")
	fmt.Fprintf(&b, "\n# sandbox\n%s\n", indent(p.Sandbox.String()))
	fmt.Fprintf(&b, "\n# network\n%s\n", indent(p.Network.String()))
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "\nWARNING: %s\n", w)
	}
	return b.String()
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
