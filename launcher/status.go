package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// StatusCmd shows what is in force for an instance right now: the last setup
// result and, with network isolation, whether the netns exists and the hit
// counters of the egress filter (root: they live in the instance's netns).
type StatusCmd struct {
	ConfigFlag
	JSON bool `name:"json" help:"Print the status as JSON."`
}

// Status is the output of status.
type Status struct {
	Instance    string                       `json:"instance"`
	SetupFailed bool                         `json:"setupFailed"`
	SetupDetail string                       `json:"setupDetail,omitempty"`
	Isolated    bool                         `json:"isolated"`
	NetnsExists bool                         `json:"netnsExists,omitempty"`
	Counters    map[string]netpolicy.Counter `json:"counters,omitempty"`
	// ForwardingEnabled are the host interfaces whose IPv4 forwarding setup
	// turned on (shared by all instances; guarded by table inet ocnix).
	ForwardingEnabled []string `json:"forwardingEnabled,omitempty"`
	// With outboundAllowDomains: whether the resolver answers, and the
	// addresses it opened that have not expired yet.
	Domains       []string             `json:"domains,omitempty"`
	ResolverAlive *bool                `json:"resolverAlive,omitempty"`
	DNSEntries    []netpolicy.DNSEntry `json:"dnsEntries,omitempty"`
	Problems      []string             `json:"problems,omitempty"`
}

func (c *StatusCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	host := hostFor(s)
	p, err := buildPlan(s, host, nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	np := p.Network
	st := Status{Instance: p.Instance, Isolated: np.Enable}
	failed, why, err := lastSetupFailed(p.Layout)
	if err != nil {
		st.Problems = append(st.Problems, "read last setup result: "+err.Error())
	}
	st.SetupFailed, st.SetupDetail = failed, why
	if p.Sandbox.Gate.Mode == sandbox.GateSupervisor { // pidfd_getfd is what ptrace_scope limits
		switch scope := host.Sandbox.PtraceScope; {
		case scope >= 3:
			st.Problems = append(st.Problems, fmt.Sprintf("kernel.yama.ptrace_scope=%d: the unix-socket gate cannot work (pidfd_getfd is forbidden below Landlock ABI 9): every unix connect of the instance fails; run refuses to start when sandbox.unixSockets.allow is set", scope))
		case scope == 2:
			st.Problems = append(st.Problems, "kernel.yama.ptrace_scope=2: the unix-socket gate needs CAP_SYS_PTRACE, so unix connects fail when run starts as the instance user (systemd User=); set it to 1")
		}
	}
	if np.Listener != nil && os.Geteuid() == 0 {
		if err := netpolicy.VerifyPeerGuard(np); err != nil {
			st.Problems = append(st.Problems, err.Error())
		}
	}
	if st.Isolated {
		_, err = os.Stat(np.NetnsPath)
		st.NetnsExists = err == nil
		for _, d := range np.Domains {
			st.Domains = append(st.Domains, d.String())
		}
		st.Problems = append(st.Problems, netpolicy.Diagnose(np)...)
		if st.ForwardingEnabled, err = netpolicy.ForwardingEnabled(); err != nil {
			st.Problems = append(st.Problems, err.Error())
		}
		if st.NetnsExists && os.Geteuid() == 0 {
			if st.Counters, err = netpolicy.Counters(np); err != nil {
				st.Problems = append(st.Problems, err.Error())
			}
			if np.DNS != nil {
				alive := true
				if err := netpolicy.ProbeResolver(np); err != nil {
					alive = false
					st.Problems = append(st.Problems, err.Error()+": names do not resolve inside the instance (start opencode-"+s.Name+"-dns, or `opencode-launcher dns`)")
				}
				st.ResolverAlive = &alive
				if st.DNSEntries, err = netpolicy.DNSEntries(np); err != nil {
					st.Problems = append(st.Problems, err.Error())
				}
			}
		} else if st.NetnsExists {
			st.Problems = append(st.Problems, "counters need root (they live inside the instance's netns)")
		}
	}
	if c.JSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(g.stdout, "%s\n", b)
		return nil
	}
	w := g.stdout
	fmt.Fprintf(w, "instance %s\n", st.Instance)
	switch {
	case st.SetupFailed:
		fmt.Fprintf(w, "  setup: FAILED: %s\n", st.SetupDetail)
	default:
		fmt.Fprintf(w, "  setup: ok\n")
	}
	if !st.Isolated {
		fmt.Fprintf(w, "  network: not isolated\n")
	} else {
		fmt.Fprintf(w, "  network: netns present: %v\n", st.NetnsExists)
		if len(st.ForwardingEnabled) > 0 {
			fmt.Fprintf(w, "  host forwarding turned on by setup (guarded by table inet %s): %s\n", netpolicy.ForwardTableName, strings.Join(st.ForwardingEnabled, ", "))
		}
		keys := make([]string, 0, len(st.Counters))
		for k := range st.Counters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "    %-20s %8d packets %10d bytes\n", k, st.Counters[k].Packets, st.Counters[k].Bytes)
		}
		if len(st.Domains) > 0 {
			alive := "unknown (needs root)"
			if st.ResolverAlive != nil {
				alive = map[bool]string{true: "answering", false: "NOT answering"}[*st.ResolverAlive]
			}
			fmt.Fprintf(w, "  dns: resolver %s; allowed names: %s\n", alive, strings.Join(st.Domains, ", "))
			fmt.Fprintf(w, "    %d open address . port pairs (name, address . port, time left of timeout)\n", len(st.DNSEntries))
			for _, e := range st.DNSEntries {
				fmt.Fprintf(w, "    %-30s %s . %d  %s of %s\n", e.Name, e.Addr, e.Port, e.Expires.Round(time.Second), e.Timeout)
			}
		}
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "  WARNING: %s\n", p)
	}
	return nil
}
