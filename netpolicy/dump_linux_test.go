package netpolicy

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestDumpRetriesInterrupted(t *testing.T) {
	calls := 0
	got, err := dump(func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{1}, netlink.ErrDumpInterrupted // partial
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Fatalf("dump = %v, %v after %d calls; want the third, complete result", got, err, calls)
	}

	calls = 0
	got, err = dump(func() ([]int, error) { calls++; return []int{1}, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != dumpTries {
		t.Fatalf("a dump that stays interrupted: %v, %v after %d calls; want ErrDumpInterrupted, no partial result, %d calls", got, err, calls, dumpTries)
	}

	boom := errors.New("boom")
	calls = 0
	if _, err = dump(func() ([]int, error) { calls++; return nil, boom }); !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("another error must not be retried: %v after %d calls", err, calls)
	}
}

// TestDumpUnderLinkChurn lists links while another goroutine adds and
// removes links in the same (test-made) namespace, as six setups starting at
// once do on a host: the kernel interrupts dumps, and dump must still give
// a complete list every time. A CI run lost a setup to exactly this
// ("results may be incomplete or inconsistent").
func TestDumpUnderLinkChurn(t *testing.T) {
	requireRoot(t)
	name := "ocnix-dump-" + testkit.RandHex(4)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { tryRun("ip", "netns", "delete", name) })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const steady = 80           // enough links that a dump spans several messages
	for i := range steady / 2 { // veth, not dummy: the dummy module may be absent
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("a%d", i)}, PeerName: fmt.Sprintf("b%d", i)}); err != nil {
			t.Fatalf("add veth pair: %v", err)
		}
	}
	churn, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer churn.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "churn"}, PeerName: "churn-peer"}
		for {
			select {
			case <-stop:
				return
			default:
			}
			churn.LinkAdd(l)
			churn.LinkDel(l)
		}
	}()
	var interrupted atomic.Int64
	for range 300 {
		links, err := dump(func() ([]netlink.Link, error) {
			ls, err := h.LinkList()
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				interrupted.Add(1)
			}
			return ls, err
		})
		if err != nil {
			close(stop)
			<-done
			t.Fatalf("dump(LinkList) under churn: %v", err)
		}
		// lo and the steady links are always there; the churn pair comes and goes.
		if n := len(links); n < steady+1 {
			close(stop)
			<-done
			t.Fatalf("dump(LinkList) returned %d links, want at least %d: a partial list got through", n, steady+1)
		}
	}
	close(stop)
	<-done
	t.Logf("the kernel interrupted %d of the raw dumps; each was repeated", interrupted.Load())
}
