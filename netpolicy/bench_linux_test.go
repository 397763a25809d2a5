package netpolicy

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Benchmarks need root, like the privileged tests. Run:
//
//	sudo -E go test ./netpolicy -run '^$' -bench . -benchtime 20x
//
// No benchmark sends traffic anywhere except to the test internet.

// cidrs10k returns 10 000 distinct /32s in 198.18.0.0/15 with gaps
// between them, so none merge and the set holds 10 000 intervals.
func cidrs10k() []string {
	out := make([]string, 10000)
	for i := range out {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>15), byte(i >> 7), byte(i<<1) & 0xff})
		out[i] = netip.PrefixFrom(a, 32).String()
	}
	return out
}

func BenchmarkEnsure10kCIDRs(b *testing.B) {
	requireRoot(b)
	in := Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: cidrs10k()}
	p, err := Build(in, HostFacts{})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(p.Allow4); n != 10000 {
		b.Fatalf("%d intervals, want 10000", n)
	}
	b.Cleanup(func() { cleanupPlan(b, p) })
	// First setup, from nothing.
	start := time.Now()
	if err := Ensure(p); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	// Then the steady state: setup re-run (atomic replace of the tables).
	b.ResetTimer()
	for b.Loop() {
		if err := Ensure(p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Milliseconds()), "ms-first-setup")
	// Build is part of every setup too; report it apart.
	bs := time.Now()
	Build(in, HostFacts{})
	b.ReportMetric(float64(time.Since(bs).Microseconds()), "µs-build")
}

func BenchmarkSetupTeardown50(b *testing.B) {
	requireRoot(b)
	const n = 50
	var setupTotal, teardownTotal, first10, last10 time.Duration
	for b.Loop() {
		plans := make([]Plan, n)
		for i := range plans {
			p, err := Build(Input{Instance: testName(), Enable: true, ListenPort: 8787, AllowCIDRs: []string{"198.18.0.0/24"}}, HostFacts{})
			if err != nil {
				b.Fatal(err)
			}
			plans[i] = p
			b.Cleanup(func() { cleanupPlan(b, p) })
		}
		for i, p := range plans {
			s := time.Now()
			if err := Ensure(p); err != nil {
				b.Fatal(err)
			}
			d := time.Since(s)
			setupTotal += d
			if i < 10 {
				first10 += d
			} else if i >= n-10 {
				last10 += d
			}
		}
		s := time.Now()
		for _, p := range plans {
			if err := Teardown(p); err != nil {
				b.Fatal(err)
			}
		}
		teardownTotal += time.Since(s)
	}
	runs := float64(b.N)
	b.ReportMetric(float64(setupTotal.Milliseconds())/runs/n, "ms-setup/instance")
	b.ReportMetric(float64(teardownTotal.Milliseconds())/runs/n, "ms-teardown/instance")
	b.ReportMetric(float64(first10.Milliseconds())/runs/10, "ms-setup-first10")
	b.ReportMetric(float64(last10.Milliseconds())/runs/10, "ms-setup-last10")
}

func BenchmarkConnectLatency(b *testing.B) {
	ti := newInternet(b)
	p := setupInstance(b, Input{Instance: testName(), Enable: true, AllowCIDRs: []string{ti.AllowedCIDR()}})
	addr := ti.tcp(ti.allowed)
	connect := func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	// Warm up both paths (ARP, conntrack modules).
	if err := connect(); err != nil {
		b.Fatalf("from host: %v", err)
	}
	var nsErr error
	inNS(b, p.NetnsPath, func() { nsErr = connect() })
	if nsErr != nil {
		b.Fatalf("from netns: %v", nsErr)
	}
	// Each path gets a worker on its own locked OS thread (the netns one
	// must be locked; locking both makes the scheduler's hand-off cost the
	// same on both sides). Workers time only the connect itself.
	type result struct {
		d   time.Duration
		err error
	}
	worker := func(setup func() error) (chan struct{}, chan result) {
		req, res := make(chan struct{}), make(chan result)
		go func() {
			runtime.LockOSThread() // never unlocked: the netns thread must die
			if err := setup(); err != nil {
				for range req {
					res <- result{err: err}
				}
				return
			}
			for range req {
				s := time.Now()
				err := connect()
				res <- result{d: time.Since(s), err: err}
			}
		}()
		return req, res
	}
	hostReq, hostRes := worker(func() error { return nil })
	nsHandle, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		b.Fatal(err)
	}
	defer nsHandle.Close()
	nsReq, nsRes := worker(func() error { return netns.Set(nsHandle) })
	defer close(hostReq)
	defer close(nsReq)

	var host, netnsD time.Duration
	n := 0
	for b.Loop() {
		hostReq <- struct{}{}
		r := <-hostRes
		if r.err != nil {
			b.Fatalf("from host: %v", r.err)
		}
		host += r.d
		nsReq <- struct{}{}
		r = <-nsRes
		if r.err != nil {
			b.Fatalf("from netns: %v", r.err)
		}
		netnsD += r.d
		n++
	}
	netns := netnsD
	b.ReportMetric(float64(host.Microseconds())/float64(n), "µs-connect-host")
	b.ReportMetric(float64(netns.Microseconds())/float64(n), "µs-connect-netns")
	b.ReportMetric(float64(netns)/float64(host), "ratio-netns/host")
	fmt.Fprintf(testWriter{b}, "connect to %s: host %v, via netns %v (n=%d)\n", addr, host/time.Duration(n), netns/time.Duration(n), n)
}

type testWriter struct{ b *testing.B }

func (w testWriter) Write(p []byte) (int, error) { w.b.Log(string(p)); return len(p), nil }
