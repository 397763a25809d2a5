// Package netpolicy puts an opencode instance in its own network namespace
// whose outbound traffic is limited, inside that namespace, to allowed CIDRs.
//
// [Build] turns an [Input] and the [HostFacts] it depends on (read once by
// [ReadHostFacts]) into a [Plan]: the names, addresses, sysctls, the
// chosen nameservers with the netns resolv.conf's exact content, and both
// nft tables as plain data. It is pure: it needs no root and has no side
// effects, and [Plan.String] renders it for `opencode-launcher explain`.
// [Check] lists every problem of an input at once, keyed by spec field;
// Build refuses an input that has any. The nft tables are shown in the syntax that `nft list` prints.
// [Ensure], [Teardown], [Enter], [Verify], [Counters] and [Diagnose]
// execute or inspect a plan.
// They need Linux and, except Verify, root. On other systems they return
// [ErrUnsupported].
//
// # What Ensure builds
//
// For instance "web":
//
//	/run/netns/opencode-web        named netns, made the way `ip netns add` makes it:
//	                               /run/netns is a shared mount point, and the netns
//	                               is a bind mount of /proc/<tid>/ns/net
//	oc-<12 hex> ── host0           veth pair; the host end is in the host netns and the
//	100.x.y.z+1/30   100.x.y.z+2/30   peer is created directly inside the netns
//	default via .1 dev host0       the netns's only route off the box
//	table inet opencode            the filter, inside the netns
//	table ip ocnix-web             the host side: masquerade of .2 only
//	table inet ocnix               shared by all instances: the forward guard
//	/run/ocnix/forwarding.json     the interfaces whose forwarding setup turned on
//	/etc/netns/opencode-web/resolv.conf
//
// The netns is always "opencode-<name>". The peer inside it is always
// "host0", like systemd-nspawn's, because it is alone in its namespace. The
// host end is "oc-" followed by 12 hex digits of SHA-256("ocnix-veth:"+name),
// which is always 15 characters (IFNAMSIZ-1). A readable name would have to
// be truncated, and truncated names collide. The host end also carries the
// alias "ocnix:<name>" (see `ip -d link`), so Ensure and Teardown can tell
// their own link from a foreign one with the same name. They never adopt or
// delete a foreign link.
//
// Instance names are 1 to 64 characters from [A-Za-z0-9_.-] and start with
// a letter or a digit. The limit keeps the log prefix under the kernel's
// 128 bytes.
//
// # Address pool
//
// Each instance gets a /30 out of 100.64.0.0/10 (RFC 6598 shared address
// space, 2^20 slots). The slot is SHA-256("ocnix-pool:<i>:"+name) modulo
// 2^20, starting with i=0. i goes up only to skip the reserved slots
// 100.100.100.96/28 (Tailscale's MagicDNS 100.100.100.100) and
// 100.115.92.0/23. The host end is .1 and the netns end .2. Why this range:
// it is never a public destination, and LANs, Docker and Kubernetes rarely
// use it, unlike RFC 1918 space.
//
// A hash cannot promise that two names never share a slot. The birthday
// bound is about n²/2^21 for n instances: 0.1% for 50 instances, 38% for
// 1000. So Ensure first lists every IPv4 route on the host, in all tables.
// If any route other than this instance's own veth overlaps the /30,
// Ensure refuses, before it creates anything. The error names the route
// and its device alias (so the other instance). The same check catches a
// host that already routes the pool, for example Tailscale, which uses
// 100.64.0.0/10. The fix is to set networkIsolation.subnet (Input.Subnet),
// an IPv4 /30 of your choice, for one of the two instances. The NixOS
// module could also assign subnets centrally.
//
// # The filter (inside the netns)
//
//	input:  policy drop; iifname lo accept; ct state established,related accept;
//	        ip saddr <host end> tcp dport <listen port> accept; counter drop
//	output: policy drop; oifname lo accept; ct state established,related accept;
//	        ip daddr @allow4 accept; ip6 daddr @allow6 accept;
//	        [ip daddr . tcp dport @dns4 accept; ip daddr . udp dport @dns4 accept;
//	         the same for ip6 and @dns6: only with outboundAllowDomains]
//	        limit rate 5/second burst 10 packets log prefix "opencode-<name>-blocked: ";
//	        meta l4proto tcp reject with tcp reset; reject with icmpx admin-prohibited
//
// allow4 and allow6 are interval sets built from outboundAllowCidrs. IPv4
// goes into allow4 and IPv6 into allow6. Overlapping and adjacent entries
// are merged by [MergeCIDRs], a pure function, so equivalent allow-lists
// produce identical sets. Entries must be canonical CIDRs: "10.0.0.1/8" is
// an error, not a guess.
//
// Large allow-lists are sent as several element messages of at most 1024
// elements each, inside the same batch. One netlink attribute holds at
// most 64 KiB, and google/nftables puts the whole list in one attribute.
// The kernel then keeps only a prefix of it, and that prefix ends in an
// open-ended interval, which fails OPEN. After the commit Ensure reads the
// sets back. If the kernel holds anything other than what was sent, it
// fails.
//
// Every rule carries the nft comment "ocnix:<name>:<key>". [Counters] uses
// it to find the rule's counter, and humans reading `ip netns exec
// opencode-<name> nft list ruleset` use it to see which instance owns the
// rule. Ensure replaces each table atomically, so counters restart at zero
// after each setup.
//
// Reject, not drop. An agent that hits a drop waits for a TCP timeout, often
// minutes, and retries. With reject it sees the failure at once. TCP gets a
// reset (ECONNREFUSED). Everything else gets ICMP admin-prohibited
// (EHOSTUNREACH). TCP deliberately does not use ICMP: kernel ICMP rate
// limits would turn some rejections in a burst into 1 s+ SYN retransmits.
// The log line tells the operator what actually happened.
//
// The log rule is rate-limited per instance (5/s, burst 10), so a looping
// agent cannot flood the kernel log. Counters keep the full count.
//
// # No reach into the host
//
// The output chain denies by default, and it sees every packet that leaves
// the netns. The netns's only non-loopback route is the default via the
// veth. That covers the host end of the veth, every other host address
// (the host's loopback services bound to 0.0.0.0 included), other
// instances' veths and their netns addresses. They are all just
// destinations that are not in allow4. 127.0.0.0/8 inside the netns is the
// netns's own loopback, never the host's. An allow-list that covers host
// addresses (0.0.0.0/0, say) does allow them, as DESIGN.md requires ("unless
// a CIDR allows it"). Build adds a note when the host end of the veth is
// allowed.
//
// # No reach into other instances (the peer guard)
//
// Whatever their isolation settings, no instance reaches another
// instance's server. Setup of every instance ([Ensure], or [EnsureShared]
// with isolation off) registers its [Listener], listen.port . uid (the
// uid is a host fact: Input.UID), in /run/ocnix/listeners.json and
// rebuilds the shared host table "inet ocnix" from that record under the
// /run/ocnix lock, in one batch ([SharedTable]): sets instance-uids,
// instance-ports and instance-owners (port . uid), and
//
//	output (hook output): oifname "lo" meta skuid @instance-uids
//	        tcp flags syn / syn,ack tcp dport @instance-ports  reject with tcp reset
//	                      the same with oifname "oc-*" (an isolated
//	                      instance's netns address, through its veth)
//	input (hook input):   iifname "oc-*" tcp flags syn / syn,ack
//	        tcp dport @instance-ports  reject with tcp reset
//
// each preceded by one rate-limited log rule per instance (its own uid, or
// its own veth) with the prefix "opencode-<name>-blocked: ". Every locally
// delivered packet leaves through lo, whatever the local address (127.x,
// ::1, the host's own addresses), so the output rule covers them all; the
// input rule covers an isolated instance whose CIDRs allow the host. The
// decision is the kernel's: the socket's owner uid, which an instance
// (no capabilities, no_new_privs) cannot change. Only a first SYN is
// matched, so a server's replies to a client whose port number happens to
// be another instance's port pass. Host users, root and a reverse proxy
// are not in @instance-uids and pass; so does an instance's connection to
// any port that is no instance's. Its own port is refused too: opencode
// hands the server password to every command the agent runs, so the
// agent must not reach its server (inside an isolated netns the filter's
// self-block rule does the same). instance-owners records who registered
// which port, for explain and [VerifyPeerGuard]; no rule exempts an owner. [Teardown] removes the entry; the last teardown (no veth and no
// listener left) removes the table. [VerifyPeerGuard] (preflight, status)
// checks the table still holds the instance's element.
//
// Limits: instances that share a user share a uid and are not separated
// from each other; an instance running as a user that also runs host
// services restricts those services' connections to instance ports the
// same way. A host `nft flush ruleset` removes the guard like the forward
// guard, until setup of any instance runs again (the record rebuilds every
// registration); preflight refuses to start a server meanwhile.
//
// # Fail closed
//
// The whole policy lives in the netns. The instance's host table holds
// only the masquerade. `nft flush ruleset` on the host, which NixOS runs on
// every nftables reload, therefore removes that masquerade. Egress can then
// only get narrower: allowed destinations stop answering because the
// packets leave un-NATed. Blocked destinations stay blocked and logged.
// The next Ensure (setup) restores the masquerade. The same flush also
// removes the shared forward guard (table inet ocnix, see "Forwarding on
// the host"): that one fails open for the *host*, not for the instance.
// Until setup runs again, the host forwards other traffic that arrives on
// the interfaces setup turned forwarding on for. The NixOS setup unit has
// ReloadPropagatedFrom=nftables.service, so that window ends when the
// nftables reload does; [Diagnose] reports it. Nothing running in the
// host netns can change the filter without entering the instance netns,
// and the instance itself has no CAP_NET_ADMIN there. If the netns cannot
// be joined, [Enter] fails. If the process is not in it, [Verify] fails
// with [ErrNotInNetns]. Neither falls back to the host namespace.
//
// # Limits (what this layer assumes)
//
// Netfilter does not see packet sockets (AF_PACKET). A process with
// CAP_NET_RAW in the netns could send raw frames out of host0, past the
// filter. The instance never has that capability: the netns belongs to the
// initial user namespace, the launcher drops every capability, and the
// seccomp layer denies packet and raw sockets. The netns layer relies on
// that. It does not rely on anything in the host ruleset.
//
// # IPv6: disabled in the netns by design
//
// Ensure sets net.ipv6.conf.default.disable_ipv6=1 in the netns before it
// creates the veth. It also sets disable_ipv6=1 on host0 and on the host
// end. So there is no IPv6 address or route off the box. An IPv6 connect
// fails at once with ENETUNREACH. ::1 on lo stays, so local test servers on
// "localhost" keep working. The reason: forwarding IPv6 needs the host-wide
// net.ipv6.conf.all.forwarding=1. That turns the host into a router and
// makes it stop accepting router advertisements, which breaks SLAAC on the
// host's uplinks. IPv6 would also need NAT66 or routed prefixes. The allow6
// set and its rule are still built and enforced, so IPv6 CIDRs in the spec
// are visible in explain (with a note) and are ready if IPv6 is ever
// enabled.
//
// # Forwarding on the host
//
// IPv4 forwards a packet only if net.ipv4.conf.<input interface>.forwarding
// is 1 (ip_route_input_slow; net.ipv4.ip_forward is just
// conf.all.forwarding, which writes every interface). The instance's
// packets come in on its veth. The replies come in on the uplink, are
// de-NATed in prerouting and are then *forwarded* to the veth, so the
// uplink needs forwarding too. Measured here, from a host with
// ip_forward=0: with forwarding only on the veth, TCP and UDP to an
// allowed address both time out (the SYN and the datagram leave, the
// replies are dropped on the uplink). With forwarding on the veth and the
// reply interface, both work, and ip_forward can stay 0.
//
// "UDP fails while TCP works" with forwarding on could be reproduced here
// in one way only, which is not ocnix's: a UDP server on a wildcard
// address of a host with several addresses that answers without IP_PKTINFO sends the reply from the
// address its route picks, not the one that was asked. The reply then
// matches no conntrack entry (not NAT's fault: the host itself, without
// netns or NAT, gets no answer from such a server either, since its
// connected socket drops the reply). Real resolvers answer from the asked
// address; the tests use miekg/dns on 0.0.0.0:53 in a netns with several
// addresses, which does. Neither conntrack, the masquerade rule, the
// in-netns input chain nor rp_filter drops UDP replies.
//
// So Ensure sets forwarding on the instance's veth (ours, gone with it)
// and then, holding the lock /run/ocnix/forwarding.lock (setup units of
// many instances run in parallel):
//
//  1. finds the reply interfaces ([ReplyDevices]): per routing table,
//     the devices of the routes that are the longest match for some
//     allowed address (a default route counts only for the allowed
//     addresses no more specific route covers, so allowing a LAN does not
//     touch the uplink), plus a route lookup per interval for policy
//     routing;
//  2. records each one whose forwarding is 0 in /run/ocnix/forwarding.json
//     (tmpfs, like the sysctls: a reboot resets both);
//  3. replaces the shared host table "inet ocnix": chain forward, hook
//     forward, priority filter, policy accept:
//     iifname "oc-*" accept; oifname "oc-*" ct state established,related
//     accept; oifname "oc-*" drop; and one iifname "<if>" drop for each
//     recorded interface;
//  4. only then writes forwarding=1 on the recorded interfaces.
//
// The record is written before the table, and the table before the
// sysctl, so no interface ever forwards without its drop rule, and a
// crash at any step is repaired by the next run. The result: the host
// forwards the instances' flows and their replies, and nothing else that
// arrives on an interface ocnix switched on. Forwarding between interfaces
// ocnix did not touch stays the host's business (policy accept). If
// conf.all.forwarding is already 1 the operator made the host a router:
// Ensure then records nothing, adds no drop rule and turns nothing off
// later.
//
// Teardown restores "where that is safe": only when no instance veth
// (alias "ocnix:*") is left on the host, because the others may need the
// same interfaces. Then it writes forwarding=0 on each recorded
// interface that is still 1 (unless conf.all.forwarding has become 1
// meanwhile: the operator's decision wins), deletes table inet ocnix and
// the record. It keeps the lock file.
//
// A host forward chain with policy drop is a different matter. In
// nftables every base chain on a hook sees the packet, and an accept ends
// only its own chain: a drop in any other chain is final. No priority of
// ours can make NixOS's nixos-fw forward chain
// (networking.firewall.filterForward = true), Docker's FORWARD DROP or
// any other drop policy accept the instances' flows. They must be accepted there; the NixOS
// module does it for the nftables firewall:
//
//	networking.firewall.extraForwardRules = ''iifname "oc-*" accept'';
//
// (nixos-fw already accepts established and related, so that covers the
// replies). [Diagnose] lists forward chains with policy drop in other
// tables.
//
// Limits: an interface that starts carrying replies after setup (a VPN
// that comes up, a changed uplink) has forwarding off until setup runs
// again, and a network manager that rewrites per-link forwarding
// (systemd-networkd's IPv4Forwarding=) can switch it off; [Diagnose] says
// so in both cases. Traffic that arrives on an enabled interface and is
// routed back out of the same interface is dropped too (the guard
// matches the input interface).
//
// # What the operator (or the NixOS module) must set
//
//   - Nothing for forwarding; see "Forwarding on the host" for a host
//     forward chain with policy drop.
//   - net.netfilter.nf_log_all_netns=1. Without it the kernel drops nft log
//     lines from every netns except the initial one. Ensure sets it,
//     because the design requires blocked attempts in the host kernel log.
//     It is host-wide: log rules in *any* container's netns then reach the
//     host log. The NixOS module should set it declaratively, so that
//     nothing undoes it. Blocked-attempt lines look like
//     "opencode-web-blocked: IN= OUT=host0 SRC=100.… DST=198.… PROTO=TCP SPT=… DPT=…".
//   - [Diagnose] checks forwarding on the veth and the reply interfaces
//     and nf_log_all_netns without privileges, and (as root) the forward
//     guard and foreign forward drop chains; setup logs its findings as
//     warnings and status shows them.
//
// # DNS
//
// Without outboundAllowDomains (with it, see the next section),
// /etc/netns/opencode-<name>/resolv.conf (the `ip netns exec` convention)
// holds networkIsolation.nameservers (Input.Nameservers). Build rejects an
// entry that is loopback, IPv6 or outside the allowed CIDRs, because it
// could never answer. When the list is empty, Build derives it from the
// host's /etc/resolv.conf ([HostFacts]): it keeps the nameservers that are
// IPv4, not loopback and inside allow4, and records the skipped ones and
// the reason in the plan and as comments in the file, so explain shows
// what setup writes. Loopback resolvers such as
// systemd-resolved's 127.0.0.53 cannot work. Inside the netns, 127.0.0.53
// is the netns's own loopback. Reaching the host's stub would need a hole
// into the host, which the design forbids. On such hosts, set nameservers
// to the upstream resolvers and allow them. With no usable resolver the
// file says so and lookups fail fast. [Enter] bind-mounts the file over
// /etc/resolv.conf in a private mount namespace. Under systemd the unit
// does the same with BindReadOnlyPaths=. The launcher itself never needs
// DNS.
//
// # Egress by host name (outboundAllowDomains)
//
// Input.AllowDomains lists host names: "api.anthropic.com" (that name),
// "*.github.com" (every name below github.com at any depth, not github.com
// itself) and either with ":port". A name without a port allows 443 and
// 80 ([DefaultDomainPorts]); ports hold for TCP and UDP (HTTP/3). See
// [ParseDomain] for what is refused.
//
// A query name matches label by label, never as text ([HostLabels]): a
// name with a label that no host name holds, such as the one label
// "x.wild" under "test" (printed x\.wild.test) or any escaped byte, is
// refused before matching, so it can never pass as a name below
// *.wild.test. DNS set elements carried over a setup are matched the same
// way.
//
// The names become addresses in the filter through the instance's own
// resolver ([RunResolver], the `opencode-launcher dns` command):
//
//   - It is a root process in the host netns. Its UDP and TCP sockets are
//     made on a locked thread that joined the instance netns, on
//     127.0.0.1:53 there, and that thread is then destroyed ([ListenDNS]).
//     The netns resolv.conf names only that address. Port 53 is below the
//     netns's unprivileged port start, so the instance cannot take it.
//   - It answers A and AAAA queries for allowed names only: everything else
//     is REFUSED and logged once per name with the prefix
//     "opencode-<name>-blocked: dns <name>" (rate-limited, 5/s burst 10).
//     Other record types of an allowed name get an empty answer, because
//     HTTPS/SVCB address hints would name addresses the filter never saw.
//   - It forwards the query, from the host netns, to the upstreams:
//     networkIsolation.nameservers, or the host's /etc/resolv.conf
//     nameservers that Build put in the plan (a loopback stub such as
//     systemd-resolved's works from there).
//   - It follows the CNAME chain from the queried name and keeps only the
//     address records at its end; records for other names are dropped.
//     The policy is applied to the queried name: CNAME targets (CDN names)
//     need not be listed.
//   - It refuses the whole answer (REFUSED, logged with the address) when
//     any address is loopback, link-local (169.254.169.254 included),
//     unspecified, multicast, reserved, inside the instance pool
//     100.64.0.0/10 or the instance's subnet, an address of the host, or
//     inside a route of another instance's veth ([HostGuard]). DNS
//     rebinding therefore cannot point the instance into the host.
//   - Before it returns the answer it adds every address . port pair to the
//     set dns4 (or dns6) in the netns with an element timeout of
//     max(TTL, 60 s), at most 1 h, commented with the queried name that
//     first opened it (the tail of it beyond 128 bytes); each set holds
//     at most 65536 elements, beyond which inserts fail; the
//     answer's TTLs are capped at the same 1 h. A client's first connect
//     therefore never races the set, and no client caches an address
//     longer than the set keeps it. If the set cannot be written the
//     answer is SERVFAIL. The kernel removes expired elements by itself;
//     answering again refreshes the timeout (TestDNSSetIsBounded pins that
//     on the test kernel; kernels that keep the first timeout expire a
//     busy name's address early, and the next answer opens it again).
//
// Names open addresses, never the reverse: an address nobody resolved
// through the resolver stays closed, by IP too. DNS to any other server,
// DoT and DoH go through the same filter as every other destination.
//
// Supervision and failure. The resolver runs as its own service
// (opencode-<name>-dns.service under NixOS, ordered after the setup unit
// and before the server). If it dies, the instance has no DNS (connection
// refused on 127.0.0.1:53) and no new addresses open; what is in the sets
// expires within its timeout: fail closed. It checks every second that
// /run/netns/opencode-<name> is still the netns it serves and exits with
// [ErrNetnsReplaced] otherwise (teardown, or teardown and setup), so that
// its supervisor restarts it in the new one. While setup runs the init
// scripts it serves the instance's DNS itself, since the unit starts only
// after setup; `run` warns when nothing answers. [ProbeResolver] tells
// `status` whether it answers; [DNSEntries] lists the sets with the time
// each element has left. Ensure replaces the filter table atomically; it
// carries the DNS elements over into the new table when their name and
// port are still allowed, with the time they had left.
//
// Limits. An allowed name opens its address and port for any traffic to
// it: a CDN address shared by many names is open to all of them on that
// port (no TLS SNI or Host check). A wildcard lets the instance send data
// out in query names to the zone's authoritative servers. AAAA answers go
// into dns6, which is inert while IPv6 is disabled in the netns.
//
// # Publishing the port
//
// The server listens inside the netns on 127.0.0.1:<port> ([Plan.ProxyTarget]).
// The input chain accepts loopback, so a proxy inside the netns reaches
// it. The host side uses systemd socket activation. The host-side listener
// is created by systemd-socket-activate in the host netns. The proxy, started
// on the first connection, runs inside the netns:
//
//	systemd-socket-activate -l 127.0.0.1:8787 -- \
//	    ip netns exec opencode-web /lib/systemd/systemd-socket-proxyd 127.0.0.1:8787
//
// The listening socket is inherited from the host netns, and the proxy's
// outbound connection is made in the instance netns. The instance's output
// filter is not involved: the proxy's connection goes over lo, and the
// replies to the host client travel on the inherited socket. Under systemd
// these are a .socket unit (ListenStream=listen.address:port) and a proxy
// service with NetworkNamespacePath=/run/netns/opencode-<name> and
// ExecStart=systemd-socket-proxyd 127.0.0.1:<port>. [Plan.PublishCommands]
// prints them for explain.
//
// # Order of operations in Ensure
//
// Ensure runs these steps: the nf_log sysctl, then the subnet clash check,
// the /run/netns shared mount, the netns, IPv6 off in the netns, the filter
// table (one batch), the veth pair (one netlink request, so no half pair can
// exist), host-side sysctls, address and link up, then lo, address, link and
// default route inside, the host table (one batch), the host forwarding
// (record, forward table, sysctls; see above), and resolv.conf (written
// atomically). The filter comes before any link to the outside,
// so even a crash mid-way never leaves a routed netns without its filter.
// [Enter] also refuses a netns whose filter chains are missing. Each step compares or replaces. An interrupted run
// (kill -9 at any point) is repaired by the next. Two Ensure runs give
// identical `nft list ruleset` and `ip -d link`/`ip addr` output. There is
// one nft transaction per table, three in all. The kernel commits each
// one whole or not at all.
package netpolicy
