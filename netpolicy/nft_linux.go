package netpolicy

import (
	"fmt"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sndBuf is large enough for one batch holding 10 000+ interval elements;
// nft itself raises its socket buffer the same way. SO_SNDBUFFORCE needs
// CAP_NET_ADMIN, which Ensure has anyway.
const sndBuf = 16 << 20

// applyTable replaces t atomically in the netns nsfd (-1: the caller's).
// carry are elements for its DNS timeout sets, added in the same batch.
func applyTable(t Table, nsfd int, carry ...DNSEntry) error {
	l, err := lower(t)
	if err != nil {
		return err
	}
	for i, s := range l.sets {
		if !s.set.HasTimeout {
			continue
		}
		for _, e := range carry {
			if e.Addr.Is4() == (s.set.KeyType.Name == dnsType4.Name) {
				l.sets[i].elems = append(l.sets[i].elems, dnsElement(e))
			}
		}
	}
	c, err := connFor(t, nsfd, nftables.WithSockOptions(forceSndBuf))
	if err != nil {
		return err
	}
	if err := l.queue(c); err != nil {
		return fmt.Errorf("table %s %s: %w", t.Family, t.Name, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("table %s %s: commit: %w", t.Family, t.Name, err)
	}
	if err := l.verifySets(c); err != nil {
		return fmt.Errorf("table %s %s: %w", t.Family, t.Name, err)
	}
	return nil
}

// verifySets reads the allow sets back and compares them with what was
// sent. A set the kernel holds differently (truncated, say) is an error, so
// setup fails instead of leaving a filter that allows more than the plan.
// This is the guard behind elemChunks.
func (l lowered) verifySets(c *nftables.Conn) error {
	for _, s := range l.sets {
		if s.set.HasTimeout {
			// Filled by the resolver, possibly already: nothing to compare.
			continue
		}
		got, err := c.GetSetElements(s.set)
		if err != nil {
			return fmt.Errorf("set %s: read back: %w", s.set.Name, err)
		}
		if len(got) != len(s.elems) {
			return fmt.Errorf("set %s: kernel holds %d elements, %d were sent; refusing a filter that differs from the plan", s.set.Name, len(got), len(s.elems))
		}
		want := map[string]int{}
		for _, e := range s.elems {
			want[elemKey(e)]++
		}
		for _, e := range got {
			if want[elemKey(e)]--; want[elemKey(e)] < 0 {
				return fmt.Errorf("set %s: kernel holds element %x that was not sent; refusing a filter that differs from the plan", s.set.Name, e.Key)
			}
		}
	}
	return nil
}

func elemKey(e nftables.SetElement) string {
	if e.IntervalEnd {
		return "end:" + string(e.Key)
	}
	return "start:" + string(e.Key)
}

func forceSndBuf(c *mnl.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt SO_SNDBUFFORCE: %w", serr)
	}
	return nil
}

// deleteTable removes t if present, in one batch (add is a no-op when it
// exists, so the delete never fails with ENOENT).
func deleteTable(t Table, nsfd int) error {
	fam, err := tableFamily(t.Family)
	if err != nil {
		return err
	}
	c, err := connFor(t, nsfd)
	if err != nil {
		return err
	}
	nt := &nftables.Table{Name: t.Name, Family: fam}
	c.AddTable(nt)
	c.DelTable(nt)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("table %s %s: delete: %w", t.Family, t.Name, err)
	}
	return nil
}

// connFor opens an nftables connection for table t in the netns nsfd (-1:
// the caller's).
func connFor(t Table, nsfd int, opts ...nftables.ConnOption) (*nftables.Conn, error) {
	if nsfd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsfd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("table %s %s: open nftables: %w", t.Family, t.Name, err)
	}
	return c, nil
}
