//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNS verbs for tests that run a resolver's upstream themselves (the systemd
// tier's opencode-<name>-dns unit): an authoritative server for made-up
// names, and a client that shows the exact answer code, which `lookup`
// (Go's resolver) folds into "server misbehaving".
var dnsVerbs = map[string]Verb{
	// serve-dns-zone ADDR NAME=IPV4...: answers A queries for the NAMEs,
	// NXDOMAIN for other names, an empty answer for other types; over UDP
	// and TCP on ADDR (a resolver retries over TCP after a truncation).
	// Prints "listening" once both sockets are bound.
	"serve-dns-zone": func(a []string) (string, error) {
		if len(a) < 2 {
			return "", errors.New("usage: serve-dns-zone ADDR NAME=IPV4 [NAME=IPV4 ...]")
		}
		zone := map[string]net.IP{}
		for _, kv := range a[1:] {
			name, ip, ok := strings.Cut(kv, "=")
			if !ok || net.ParseIP(ip).To4() == nil {
				return "", fmt.Errorf("serve-dns-zone: %q is not NAME=IPV4", kv)
			}
			zone[dns.CanonicalName(name)] = net.ParseIP(ip).To4()
		}
		h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative = true
			if len(req.Question) == 1 {
				q := req.Question[0]
				ip, ok := zone[dns.CanonicalName(q.Name)]
				switch {
				case !ok:
					m.Rcode = dns.RcodeNameError
				case q.Qtype == dns.TypeA:
					m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: ip}}
				}
			} else {
				m.Rcode = dns.RcodeFormatError
			}
			w.WriteMsg(m)
		})
		pc, err := net.ListenPacket("udp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		l, err := net.Listen("tcp", a[0])
		if err != nil {
			return "", unwrap(err)
		}
		fmt.Println("listening")
		errc := make(chan error, 2)
		go func() { errc <- (&dns.Server{PacketConn: pc, Handler: h}).ActivateAndServe() }()
		go func() { errc <- (&dns.Server{Listener: l, Handler: h}).ActivateAndServe() }()
		return "", <-errc
	},
	// dns-rcode NAME [SERVER[:PORT]]: one A query over UDP to SERVER (port 53), or to
	// the first nameserver of /etc/resolv.conf (inside an instance, its
	// netns's own); prints "ok RCODE ADDR...". A resolver that does not
	// answer is "timeout".
	"dns-rcode": func(a []string) (string, error) {
		server := ""
		if len(a) > 1 {
			server = a[1]
			if _, _, err := net.SplitHostPort(server); err != nil {
				server = net.JoinHostPort(server, "53")
			}
		} else {
			cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
			if err != nil {
				return "", unwrap(err)
			}
			if len(cc.Servers) == 0 {
				return "", fmt.Errorf("no nameserver in /etc/resolv.conf")
			}
			server = net.JoinHostPort(cc.Servers[0], cc.Port)
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(a[0]), dns.TypeA)
		c := &dns.Client{Timeout: 3 * time.Second}
		r, _, err := c.Exchange(m, server)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return "", fmt.Errorf("timeout")
			}
			return "", unwrap(err)
		}
		out := []string{dns.RcodeToString[r.Rcode]}
		for _, rr := range r.Answer {
			if v, ok := rr.(*dns.A); ok {
				out = append(out, v.A.String())
			}
		}
		return strings.Join(out, " "), nil
	},
}
