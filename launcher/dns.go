package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"

	"github.com/ocnix/ocnix/netpolicy"
	"golang.org/x/sys/unix"
)

// DNSCmd runs the resolver of an instance with
// networkIsolation.outboundAllowDomains: a root process in the host netns
// whose sockets live in the instance netns (netpolicy.RunResolver). Under
// NixOS it is the unit opencode-<name>-dns.service; elsewhere run it beside
// the server. It exits 75 when the netns it serves is removed or replaced
// (teardown, or a setup that recreated it), so that its supervisor starts
// it again in the new one; until then the instance has no DNS and no new
// addresses open: fail closed.
type DNSCmd struct {
	ConfigFlag
}

func (c *DNSCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "instance %q: dns needs root (it opens sockets inside the instance netns and writes its nft sets)", s.Name)
	}
	plan, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	p := plan.Network
	if !p.Enable || p.DNS == nil {
		return errorf(ExitSpecInvalid, "instance %q: networkIsolation.outboundAllowDomains is empty or networkIsolation.enable is false: the resolver has nothing to answer", s.Name)
	}
	ups, err := resolverUpstreams(s.Name, p)
	if err != nil {
		return err
	}
	log := g.logger(s.Name)
	ctx, stop := signal.NotifyContext(g.ctx, unix.SIGTERM, unix.SIGINT)
	defer stop()
	err = netpolicy.RunResolver(ctx, p, netpolicy.ResolverConfig{Upstreams: ups, Log: log}, func() {
		log.Info("resolver ready", "listen", p.DNS.Listen, "netns", p.Netns, "upstreams", addrList(ups), "names", len(p.Domains))
		if err := sdNotify("READY=1"); err != nil {
			log.Warn("sd_notify failed", "err", err)
		}
	})
	switch {
	case errors.Is(err, netpolicy.ErrNetnsReplaced):
		return withCode(ExitTempFail, fmt.Errorf("instance %q: %w; the resolver stops so that it can be started again in the new netns", s.Name, err))
	case err != nil:
		return withCode(ExitOSErr, fmt.Errorf("instance %q: %w", s.Name, err))
	}
	log.Info("resolver stopped")
	return nil
}

// resolverUpstreams are the plan's: networkIsolation.nameservers, or the
// host's, chosen when the plan was made.
func resolverUpstreams(instance string, p netpolicy.Plan) ([]netip.AddrPort, error) {
	if len(p.DNS.Upstreams) == 0 {
		return nil, errorf(ExitConfig, "instance %q: no upstream resolver: the host's /etc/resolv.conf names none; set networkIsolation.nameservers", instance)
	}
	return p.DNS.Upstreams, nil
}

// scriptResolver serves the instance's DNS while setup runs its init
// scripts. The dns unit starts after setup, so without this an init script
// (a git pull, a package install) could not resolve the allowed names. When
// a resolver already answers in the netns (the unit, on a re-run of setup),
// that one serves and this does nothing. A resolver that cannot start is a
// warning, not a failure: a script that needs no name still works, and one
// that does fails with its own message.
func scriptResolver(ctx context.Context, plan *Plan, log *slog.Logger) (stop func()) {
	noop := func() {}
	p := plan.Network
	if !p.Enable || p.DNS == nil || len(plan.Setup.InitScripts) == 0 {
		return noop
	}
	ups, err := resolverUpstreams(plan.Instance, p)
	if err != nil {
		log.Warn("init scripts run without DNS", "err", err)
		return noop
	}
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- netpolicy.RunResolver(ctx, p, netpolicy.ResolverConfig{Upstreams: ups, Log: log}, func() { close(ready) })
	}()
	select {
	case <-ready:
		log.Info("resolver serving the init scripts", "listen", p.DNS.Listen)
		return func() { cancel(); <-done }
	case err := <-done:
		cancel()
		if errors.Is(err, unix.EADDRINUSE) {
			log.Debug("a resolver already answers in the netns; the init scripts use it")
		} else {
			log.Warn("init scripts run without DNS: the resolver did not start", "err", err)
		}
		return noop
	}
}

func addrList(a []netip.AddrPort) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// sdNotify sends state to systemd when the process runs as a Type=notify
// service (NOTIFY_SOCKET set), and does nothing otherwise.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
