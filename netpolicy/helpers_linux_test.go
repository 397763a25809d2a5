package netpolicy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
	"github.com/vishvananda/netns"
)

// requireRoot skips privileged tests loudly, saying how to run them.
func requireRoot(t testing.TB) {
	t.Helper()
	testkit.RequireRoot(t, "CAP_NET_ADMIN, CAP_SYS_ADMIN to create network namespaces, veths and nft tables", "sudo -E go test ./netpolicy/...")
}

// testName returns a unique instance name for this test run.
func testName() string { return "t-" + testkit.RandHex(4) }

// run runs a command and fails the test on error.
func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tryRun runs a command and ignores failure (cleanup).
func tryRun(args ...string) {
	_ = exec.Command(args[0], args[1:]...).Run()
}

// setupInstance builds and ensures an instance and registers a cleanup
// that removes everything even when the test fails.
func setupInstance(t testing.TB, in Input) Plan {
	t.Helper()
	return setupInstanceOn(t, in, HostFacts{})
}

// setupInstanceOn is setupInstance on a host with the given facts.
func setupInstanceOn(t testing.TB, in Input, host HostFacts) Plan {
	t.Helper()
	p, err := Build(in, host)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { cleanupPlan(t, p) })
	if err := Ensure(p); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return p
}

// cleanupPlan runs Teardown and then removes by hand whatever might be
// left, touching only objects named after this plan.
func cleanupPlan(t testing.TB, p Plan) {
	if err := Teardown(p); err != nil {
		t.Errorf("cleanup: Teardown: %v", err)
	}
	tryRun("nft", "delete", "table", "ip", HostTableName(p.Instance))
	tryRun("ip", "link", "del", p.HostVeth)
	tryRun("ip", "netns", "del", p.Netns)
	os.RemoveAll("/etc/netns/" + p.Netns)
}

// inNS runs fn on a locked thread inside the named netns at path. Sockets
// created in fn stay in that netns after fn returns.
func inNS(t testing.TB, path string, fn func()) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	defer ns.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			t.Errorf("setns %s: %v", path, err)
			return
		}
		fn()
	}()
	<-done
}

// dialFrom dials addr over network from inside the netns at path.
func dialFrom(t testing.TB, path, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	inNS(t, path, func() { c, err = net.DialTimeout(network, addr, timeout) })
	return c, err
}

// listenIn opens a TCP listener inside the netns at path and serves a
// one-line greeting to each connection.
func listenIn(t testing.TB, path, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	inNS(t, path, func() { l, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { l.Close() })
	go serveHello(l)
	return l
}

func serveHello(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, "hello")
		c.Close()
	}
}

// udpEchoIn opens a UDP echo server inside the netns at path.
func udpEchoIn(t testing.TB, path, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNS(t, path, func() { pc, err = net.ListenPacket("udp", addr) })
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc
}

// runErr runs a command and returns its output and error.
func runErr(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}
