package netpolicy

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
)

// diagnoseMaxLookups bounds the route lookups for a huge allow-list; the
// devices behind the first intervals are representative enough.
const diagnoseMaxLookups = 64

// Diagnose reports host settings that would make the plan silently not
// work, in plain language, for setup and status to print as warnings. It
// changes nothing. Today it checks:
//
//   - net.netfilter.nf_log_all_netns: without it, blocked attempts are not
//     logged (Ensure sets it; something may have reset it);
//   - IPv4 forwarding on the instance's veth and on the interfaces that
//     lead to the allowed CIDRs ([ReplyDevices]): replies arrive there and
//     IPv4 checks forwarding on the input interface. Setup turns it on;
//     an interface that is off was added or changed since (a VPN came up,
//     the uplink moved), and running setup again fixes it;
//   - with CAP_NET_ADMIN only: that the shared forward table guarding the
//     forwarding ocnix turned on is there (a host `nft flush ruleset`
//     removes it until the next setup), and forward chains of other tables
//     with policy drop, which drop instance egress unless they accept
//     iifname "oc-*" themselves.
func Diagnose(p Plan) []string {
	if !p.Enable {
		return nil
	}
	var out []string
	if v := readSysctl("net.netfilter.nf_log_all_netns"); v != "1" {
		out = append(out, fmt.Sprintf("net.netfilter.nf_log_all_netns is %q, not 1: blocked attempts from the netns do not reach the kernel log", v))
	}
	if _, err := netlink.LinkByName(p.HostVeth); err == nil {
		if v := readSysctl(forwardingKey(p.HostVeth)); v != "1" {
			out = append(out, fmt.Sprintf("net.ipv4.conf.%s.forwarding is %q: the instance's own traffic is not forwarded; run setup again", p.HostVeth, v))
		}
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return append(out, "open netlink: "+err.Error())
	}
	defer h.Close()
	devs, err := ReplyDevices(h, p.Allow4)
	if err != nil {
		out = append(out, err.Error())
	}
	for _, d := range devs {
		if v := readSysctl(forwardingKey(d)); v != "1" {
			out = append(out, fmt.Sprintf("net.ipv4.conf.%s.forwarding is %q: replies from allowed destinations arrive on %s and are not forwarded to the instance; run setup again, which turns it on for %s only (the routes changed since setup)", d, v, d, d))
		}
	}
	if os.Geteuid() != 0 {
		return out
	}
	if st, err := readForwardState(); err != nil {
		out = append(out, err.Error())
	} else if len(st.Enabled) > 0 && !forwardTablePresent() {
		out = append(out, fmt.Sprintf("forwarding that setup turned on (%s) is not guarded: the host table inet %s is missing (a host `nft flush ruleset`?), so the host routes other traffic arriving there; run setup again", strings.Join(st.Enabled, ", "), ForwardTableName))
	}
	for _, ch := range forwardDropChains() {
		out = append(out, fmt.Sprintf(`%s drops forwarded traffic by default: instance egress is dropped unless that chain accepts iifname "oc-*" (an accept in ocnix's own table cannot override another table's drop); on NixOS set networking.firewall.extraForwardRules = ''iifname "oc-*" accept'';`, ch))
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
