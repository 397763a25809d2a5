package netpolicy

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
)

// diagnoseMaxLookups bounds the route lookups for a huge allow-list; the
// devices behind the first intervals are representative enough.
const diagnoseMaxLookups = 64

// Diagnose reports host settings that would make the plan silently not
// work, in plain language, for setup to print as warnings. It needs no
// privileges and changes nothing. Today it checks:
//
//   - net.netfilter.nf_log_all_netns: without it, blocked attempts are not
//     logged (Ensure sets it; something may have reset it);
//   - IPv4 forwarding on the interfaces that lead to the allowed CIDRs:
//     replies arrive there and IPv4 checks forwarding on the input
//     interface, so with forwarding off allowed connections time out.
func Diagnose(p Plan) []string {
	if !p.Enable {
		return nil
	}
	var out []string
	if v := readSysctl("net.netfilter.nf_log_all_netns"); v != "1" {
		out = append(out, fmt.Sprintf("net.netfilter.nf_log_all_netns is %q, not 1: blocked attempts from the netns do not reach the kernel log", v))
	}
	devs := map[string]bool{}
	for i, iv := range p.Allow4 {
		if i == diagnoseMaxLookups {
			break
		}
		routes, err := netlink.RouteGet(iv.First.AsSlice())
		if err != nil {
			continue
		}
		for _, r := range routes {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != "lo" {
				devs[l.Attrs().Name] = true
			}
		}
	}
	var names []string
	for d := range devs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if v := readSysctl("net.ipv4.conf." + d + ".forwarding"); v != "1" {
			out = append(out, fmt.Sprintf("net.ipv4.conf.%s.forwarding is %q: replies from allowed destinations arrive on %s and are not forwarded to the instance; set it to 1 (or net.ipv4.conf.all.forwarding=1)", d, v, d))
		}
	}
	return out
}

func readSysctl(key string) string {
	b, err := os.ReadFile(Sysctl{Key: key}.path())
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}
