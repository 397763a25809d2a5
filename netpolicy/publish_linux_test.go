package netpolicy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPublishPortWithSocketProxyd checks the documented way of exposing
// the server: systemd-socket-activate listens on the host, and
// systemd-socket-proxyd, inside the netns, forwards to the server on the
// netns loopback through the filter's input chain.
func TestPublishPortWithSocketProxyd(t *testing.T) {
	requireRoot(t)
	const proxyd = "/lib/systemd/systemd-socket-proxyd"
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skipf("SKIP: systemd-socket-activate not installed (Debian: apt-get install systemd): %v", err)
	}
	if _, err := os.Stat(proxyd); err != nil {
		t.Skipf("SKIP: %s not installed: %v", proxyd, err)
	}
	// A free port on the host; the same port inside the netns, as in production.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	p := setupInstance(t, Input{Instance: testName(), Enable: true, ListenAddress: "127.0.0.1", ListenPort: port})
	listenIn(t, p.NetnsPath, p.ProxyTarget)

	cmd := exec.Command(activate, "-l", fmt.Sprintf("127.0.0.1:%d", port), "--", "ip", "netns", "exec", p.Netns, proxyd, p.ProxyTarget)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID, our own child
		cmd.Wait()
	})
	t.Logf("publish: %s", strings.Join(cmd.Args, " "))
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil || line != "hello\n" {
				t.Fatalf("through the proxy: read %q, %v; activate stderr:\n%s", line, err, stderr.String())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host port %d never answered: %v; activate stderr:\n%s", port, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
