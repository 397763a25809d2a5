package netpolicy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

var (
	dnsType4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	dnsType6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
)

// dnsSet describes a DNS timeout set of type typ in table t.
func dnsSet(t *nftables.Table, name, typ string) (*nftables.Set, error) {
	s := &nftables.Set{Table: t, Name: name, HasTimeout: true, Concatenation: true}
	switch typ {
	case "ipv4_addr . inet_service":
		s.KeyType = dnsType4
	case "ipv6_addr . inet_service":
		s.KeyType = dnsType6
	default:
		return nil, bug(fmt.Errorf("unknown timeout set type %q", typ))
	}
	return s, nil
}

func dnsElement(e DNSEntry) nftables.SetElement {
	return nftables.SetElement{Key: dnsKey(e.Addr, e.Port), Timeout: e.Timeout, Comment: elementComment(e.Name)}
}

// SetWriter adds resolved addresses to an instance's DNS sets. It keeps one
// netlink socket open in the instance netns, so it keeps working on the
// same netns whatever happens to /run/netns; [NetnsReplaced] tells the
// caller when that netns is no longer the instance's.
type SetWriter struct {
	// mu makes each Add its own batch: google/nftables queues messages per
	// connection, so concurrent Adds would share a Flush, and a failing
	// element would abort the other caller's elements while its own Flush
	// found nothing to send and reported success.
	mu     sync.Mutex
	c      *nftables.Conn
	s4, s6 *nftables.Set
}

// OpenSetWriter opens a SetWriter for p, which must have DNS. It needs
// CAP_NET_ADMIN.
func OpenSetWriter(p Plan) (*SetWriter, error) {
	if p.DNS == nil {
		return nil, bug(errors.New("OpenSetWriter: plan has no DNS"))
	}
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: dns sets of %s: open %s: %w", p.Netns, p.NetnsPath, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(), nftables.WithSockOptions(forceSndBuf))
	if err != nil {
		return nil, fmt.Errorf("netpolicy: dns sets of %s: open nftables: %w", p.Netns, err)
	}
	t := &nftables.Table{Name: p.Filter.Name, Family: nftables.TableFamilyINet}
	w := &SetWriter{c: c}
	if w.s4, err = dnsSet(t, p.DNS.Set4, "ipv4_addr . inet_service"); err != nil {
		return nil, err
	}
	if w.s6, err = dnsSet(t, p.DNS.Set6, "ipv6_addr . inet_service"); err != nil {
		return nil, err
	}
	return w, nil
}

// Add inserts entries in one transaction. An element that is already
// there gets the new timeout (see TestDNSSetIsBounded; kernels without
// in-place timeout updates keep the old one until it expires) and keeps
// its first comment.
func (w *SetWriter) Add(entries []DNSEntry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var e4, e6 []nftables.SetElement
	for _, e := range entries {
		el := dnsElement(e)
		if e.Addr.Unmap().Is4() {
			e4 = append(e4, el)
		} else {
			e6 = append(e6, el)
		}
	}
	for _, x := range []struct {
		s  *nftables.Set
		es []nftables.SetElement
	}{{w.s4, e4}, {w.s6, e6}} {
		for len(x.es) > 0 {
			n := min(elemsPerMessage, len(x.es))
			if err := w.c.SetAddElements(x.s, x.es[:n]); err != nil {
				return fmt.Errorf("netpolicy: dns set %s: %w", x.s.Name, err)
			}
			x.es = x.es[n:]
		}
	}
	if err := w.c.Flush(); err != nil {
		return fmt.Errorf("netpolicy: dns sets: add %d elements: %w", len(entries), err)
	}
	return nil
}

// Close closes the netlink socket.
func (w *SetWriter) Close() error { return w.c.CloseLasting() }

// DNSEntries reads the current contents of the instance's DNS sets, with
// the time each element has left, sorted by name, address and port. It
// needs CAP_NET_ADMIN.
func DNSEntries(p Plan) ([]DNSEntry, error) {
	if p.DNS == nil {
		return nil, nil
	}
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: dns sets of %s: open %s: %w", p.Netns, p.NetnsPath, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("netpolicy: dns sets of %s: open nftables: %w", p.Netns, err)
	}
	t := &nftables.Table{Name: p.Filter.Name, Family: nftables.TableFamilyINet}
	var out []DNSEntry
	for _, name := range []string{p.DNS.Set4, p.DNS.Set6} {
		els, err := c.GetSetElements(&nftables.Set{Table: t, Name: name})
		if err != nil {
			return nil, fmt.Errorf("netpolicy: dns set %s: %w", name, err)
		}
		for _, el := range els {
			a, port, ok := parseDNSKey(el.Key)
			if !ok {
				return nil, fmt.Errorf("netpolicy: dns set %s: element key %x is not address . port", name, el.Key)
			}
			out = append(out, DNSEntry{Addr: a, Port: port, Name: el.Comment, Timeout: el.Timeout, Expires: el.Expires})
		}
	}
	slices.SortFunc(out, func(a, b DNSEntry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out, nil
}
