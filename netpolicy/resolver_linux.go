package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// ListenDNS opens the resolver's UDP and TCP sockets inside the instance
// netns, on p.DNS.Listen. The sockets stay in that netns; the process does
// not: they are made on a locked thread that joined the netns and is then
// destroyed (see inNetns).
func ListenDNS(p Plan) (*net.UDPConn, *net.TCPListener, error) {
	if p.DNS == nil {
		return nil, nil, bug(errors.New("ListenDNS: plan has no DNS"))
	}
	fd, err := unix.Open(p.NetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("netpolicy: resolver %s: open %s: %w; run setup first", p.Instance, p.NetnsPath, err)
	}
	defer unix.Close(fd)
	var pc *net.UDPConn
	var l *net.TCPListener
	addr := p.DNS.Listen
	err = inNetns(fd, func() error {
		var err error
		if pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)); err != nil {
			return err
		}
		if l, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr)); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("netpolicy: resolver %s: listen on %s in %s: %w", p.Instance, addr, p.Netns, err)
	}
	return pc, l, nil
}

// netnsID returns the device and inode of a network namespace file.
func netnsID(path string) (uint64, uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}

// RunResolver serves p's DNS until ctx ends (nil) or the netns is removed
// or replaced (ErrNetnsReplaced). ready is called once both sockets serve.
// It needs root: it opens sockets inside the netns and writes its sets.
// cfg.Sets and cfg.Guard default to a SetWriter and a HostGuard.
func RunResolver(ctx context.Context, p Plan, cfg ResolverConfig, ready func()) error {
	dev, ino, err := netnsID(p.NetnsPath)
	if err != nil {
		return fmt.Errorf("netpolicy: resolver %s: %w; run setup first", p.Instance, err)
	}
	if cfg.Sets == nil {
		w, err := OpenSetWriter(p)
		if err != nil {
			return err
		}
		defer w.Close()
		cfg.Sets = w
	}
	if cfg.Guard == nil {
		cfg.Guard = NewHostGuard().Refused
	}
	r, err := NewResolver(p, cfg)
	if err != nil {
		return err
	}
	pc, l, err := ListenDNS(p)
	if err != nil {
		return err
	}
	// Both sockets must be in the netns we checked, not in one that
	// replaced it in between.
	if d, i, err := netnsID(p.NetnsPath); err != nil || d != dev || i != ino {
		pc.Close()
		l.Close()
		return fmt.Errorf("netpolicy: resolver %s: %w", p.Instance, ErrNetnsReplaced)
	}
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: started.Done}
	// A bounded number of TCP clients at a time; the rest wait in the
	// backlog, so a flood of connections costs bounded memory.
	tcp := &dns.Server{Listener: netutil.LimitListener(l, maxTCPClients), Handler: r, NotifyStartedFunc: started.Done,
		ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 5 * time.Second }}
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	started.Wait()
	if ready != nil {
		ready()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer udp.Shutdown()
	defer tcp.Shutdown()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("netpolicy: resolver %s: %w", p.Instance, err)
		case <-tick.C:
			if d, i, err := netnsID(p.NetnsPath); err != nil || d != dev || i != ino {
				return fmt.Errorf("netpolicy: resolver %s: %w", p.Instance, ErrNetnsReplaced)
			}
		}
	}
}

// HostGuard refuses answers that point at the host itself or into another
// instance: every address on a host interface, and every route of an
// ocnix veth (link alias "ocnix:…"). It re-reads them at most once a
// second, so addresses that appear later (DHCP, a new instance) count too.
type HostGuard struct {
	mu     sync.Mutex
	at     time.Time
	addrs  map[netip.Addr]string
	routes []guardRoute
	err    error
}

type guardRoute struct {
	dst netip.Prefix
	why string
}

// NewHostGuard returns a guard that reads the host lazily.
func NewHostGuard() *HostGuard { return &HostGuard{} }

// Refused says why a is refused, or "".
func (g *HostGuard) Refused(a netip.Addr) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.at) > time.Second {
		g.refresh()
	}
	if g.err != nil {
		// Fail closed: without the host's addresses nothing can be vouched for.
		return "cannot read the host's addresses: " + g.err.Error()
	}
	if why, ok := g.addrs[a]; ok {
		return why
	}
	for _, r := range g.routes {
		if r.dst.Contains(a) {
			return r.why
		}
	}
	return ""
}

func (g *HostGuard) refresh() {
	g.at = time.Now()
	g.addrs, g.routes, g.err = map[netip.Addr]string{}, nil, nil
	links, err := dump(netlink.LinkList)
	if err != nil {
		g.err = err
		return
	}
	for _, l := range links {
		name := l.Attrs().Name
		addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			g.err = err
			return
		}
		for _, ad := range addrs {
			if a, ok := netip.AddrFromSlice(ad.IP); ok {
				g.addrs[a.Unmap()] = "an address of this host (" + name + ")"
			}
		}
		alias := l.Attrs().Alias
		if !strings.HasPrefix(alias, aliasPrefix) {
			continue
		}
		routes, err := dump(func() ([]netlink.Route, error) { return netlink.RouteList(l, netlink.FAMILY_V4) })
		if err != nil {
			g.err = err
			return
		}
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			g.routes = append(g.routes, guardRoute{netip.PrefixFrom(a.Unmap(), ones), "the subnet of instance " + strings.TrimPrefix(alias, aliasPrefix)})
		}
	}
}

// ProbeResolver asks the instance's resolver, from inside the netns, for
// a sign of life: a STATUS query, which it answers NOTIMP without logging
// or forwarding anything. It needs root (it joins the netns).
func ProbeResolver(p Plan) error {
	if p.DNS == nil {
		return nil
	}
	fd, err := unix.Open(p.NetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netpolicy: probe resolver %s: %w", p.Instance, err)
	}
	defer unix.Close(fd)
	var c net.Conn
	if err := inNetns(fd, func() error {
		var err error
		c, err = net.Dial("udp", p.DNS.Listen.String())
		return err
	}); err != nil {
		return fmt.Errorf("netpolicy: probe resolver %s: %w", p.Instance, err)
	}
	return probe(p, c)
}

// ProbeResolverHere is ProbeResolver for a caller already in the netns:
// the locked thread after Enter, or a process started with
// NetworkNamespacePath=. It needs no privileges.
func ProbeResolverHere(p Plan) error {
	if p.DNS == nil {
		return nil
	}
	c, err := net.Dial("udp", p.DNS.Listen.String())
	if err != nil {
		return fmt.Errorf("netpolicy: probe resolver %s: %w", p.Instance, err)
	}
	return probe(p, c)
}

func probe(p Plan, c net.Conn) error {
	defer c.Close()
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.Opcode = dns.OpcodeStatus
	cl := &dns.Client{Timeout: time.Second}
	r, _, err := cl.ExchangeWithConn(m, &dns.Conn{Conn: c})
	if err != nil {
		return fmt.Errorf("netpolicy: resolver %s on %s in %s does not answer: %w", p.Instance, p.DNS.Listen, p.Netns, err)
	}
	if r.Rcode != dns.RcodeNotImplemented {
		return fmt.Errorf("netpolicy: resolver %s: something else answers on %s (rcode %s)", p.Instance, p.DNS.Listen, dns.RcodeToString[r.Rcode])
	}
	return nil
}
