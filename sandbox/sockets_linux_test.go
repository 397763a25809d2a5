package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

// TestSandboxSocketAllowList tries, in the real sandbox, every
// combination of a set of families, types (with and without flag bits,
// unknown ones included) and protocols, and checks that exactly the
// allowed ones succeed and every other one gets the errno of the first
// level that does not match. The allowed set is written out here, not
// taken from the plan, so that a plan that grows is caught.
func TestSandboxSocketAllowList(t *testing.T) {
	f := newFixture(t)
	plan, err := Build(f.in, DetectCaps())
	must(t, err)
	type key struct{ fam, typ, proto int }
	allowed := map[key]bool{
		{unix.AF_UNIX, unix.SOCK_STREAM, 0}:                    true,
		{unix.AF_UNIX, unix.SOCK_SEQPACKET, 0}:                 true,
		{unix.AF_INET, unix.SOCK_STREAM, 0}:                    true,
		{unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP}:     true,
		{unix.AF_INET, unix.SOCK_DGRAM, 0}:                     true,
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP}:      true,
		{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}:   true,
		{unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_ROUTE}: true,
	}
	for k := range allowed {
		if k.fam == unix.AF_INET {
			allowed[key{unix.AF_INET6, k.typ, k.proto}] = true
		}
	}
	if plan.Landlock.gatesUnix() {
		allowed[key{unix.AF_UNIX, unix.SOCK_DGRAM, 0}] = true
	}
	pairAllowed := func(k key) bool { return k.fam == unix.AF_UNIX && allowed[k] }
	typeErrno := map[int]unix.Errno{unix.AF_UNIX: unix.EACCES, unix.AF_INET: unix.EPERM, unix.AF_INET6: unix.EPERM, unix.AF_NETLINK: unix.EPERM}
	const flags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	want := func(fam uint64, typ, proto int, pair bool) unix.Errno {
		lo := int(uint32(fam))
		ok := allowed
		if pair {
			ok = map[key]bool{}
			for k := range allowed {
				if pairAllowed(k) {
					ok[k] = true
				}
			}
		}
		famOK, typeOK := false, false
		for k := range ok {
			if k.fam == lo {
				famOK = true
				if k.typ == typ&^flags {
					typeOK = true
				}
			}
		}
		switch {
		case !famOK:
			return unix.EAFNOSUPPORT
		case !typeOK:
			return typeErrno[lo]
		case !ok[key{lo, typ &^ flags, proto}]:
			return unix.EPROTONOSUPPORT
		}
		return 0
	}
	families := []uint64{unix.AF_UNSPEC, unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_PACKET,
		unix.AF_VSOCK, 45, 46, 0x7fffffff, unix.AF_INET | 1<<32, unix.AF_PACKET | 1<<32}
	var types []int
	for typ := range 16 {
		types = append(types, typ)
	}
	types = append(types, unix.SOCK_STREAM|flags, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC,
		unix.SOCK_STREAM|0x40000000, unix.SOCK_DGRAM|0x100, unix.SOCK_RAW|0x80000000)
	protos := []int{0, unix.IPPROTO_ICMP, unix.NETLINK_SOCK_DIAG, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_RAW, unix.IPPROTO_MPTCP}
	for _, call := range []string{"socket", "socketpair"} {
		args := []string{"socket-expect", call}
		nAllowed := 0
		for _, fam := range families {
			for _, typ := range types {
				for _, proto := range protos {
					w := want(fam, typ, proto, call == "socketpair")
					if w == 0 {
						nAllowed++
					}
					args = append(args, fmt.Sprintf("%#x,%#x,%d,%d", fam, uint32(typ), proto, w))
				}
			}
		}
		if nAllowed == 0 {
			t.Fatalf("%s: no combination expected to succeed", call)
		}
		t.Run(call, func(t *testing.T) {
			if got := f.run(t, f.in, args...); got != 0 {
				t.Errorf("%s: %d of %d combinations tried: %d (%s); the mismatches are on stderr (go test -v)", call, len(args)-2, len(args)-2, got, errnoName(got))
			}
		})
	}
}

// TestUnixRawIsDatagram pins the kernel behaviour behind denying
// AF_UNIX SOCK_RAW: unix_create makes it a datagram socket, which can
// sendto(2) any pathname datagram socket, out of the gate's sight.
func TestUnixRawIsDatagram(t *testing.T) {
	dir := t.TempDir()
	victim := listenDgram(t, filepath.Join(dir, "victim.sock"))
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("this kernel refuses AF_UNIX SOCK_RAW (%v): nothing to deny", err)
	}
	defer unix.Close(fd)
	if typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); typ != unix.SOCK_DGRAM {
		t.Errorf("SO_TYPE of AF_UNIX SOCK_RAW = %d, want SOCK_DGRAM", typ)
	}
	must(t, unix.Sendto(fd, []byte("raw"), 0, &unix.SockaddrUnix{Name: filepath.Join(dir, "victim.sock")}))
	expectDatagram(t, victim, "raw")
}

// listenDgram binds a unix datagram socket at p that anyone may send to.
func listenDgram(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd); os.Remove(p) })
	must(t, unix.Bind(fd, &unix.SockaddrUnix{Name: p}))
	must(t, os.Chmod(p, 0o777))
	return fd
}

func expectDatagram(t *testing.T, fd int, want string) {
	t.Helper()
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	must(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	buf := make([]byte, 16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("victim did not receive %q: %q, %v", want, buf[:max(n, 0)], err)
	}
}

// TestSandboxUnixRawBelowABI9 is hole 1 of the red team: the seccomp
// rules denied only SOCK_DGRAM for AF_UNIX, and SOCK_RAW is a datagram
// socket too, so sendto reached a datagram socket outside the
// allow-list (journald's, /dev/log). The positive twin runs the same
// probe outside the sandbox.
func TestSandboxUnixRawBelowABI9(t *testing.T) {
	f := newFixture(t)
	if p, err := Build(f.in, DetectCaps()); err != nil {
		t.Fatal(err)
	} else if p.Landlock.gatesUnix() {
		t.Skipf("SKIPPED %s: this kernel's Landlock (ABI %d) gates datagram sends itself", t.Name(), p.Landlock.ABI)
	}
	victimPath := filepath.Join(f.sockDir, "victim-dgram.sock")
	victim := listenDgram(t, victimPath)
	// Twin: outside the sandbox the probe reaches the victim.
	c := exec.Command(f.probe, "unix-raw-sendto", victimPath)
	c.Env = []string{probeEnv + "=1"}
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("outside the sandbox: %v: %s", err, out)
	}
	expectDatagram(t, victim, "raw")
	s := func(v int) string { return itoa(v) }
	runCases(t, f, f.in, []probeCase{
		{name: "UnixRawSocketDenied", args: []string{"socket", s(unix.AF_UNIX), s(unix.SOCK_RAW | unix.SOCK_CLOEXEC), "0"}, want: int(unix.EACCES)},
		{name: "UnixRawSocketpairDenied", args: []string{"socketpair", s(unix.AF_UNIX), s(unix.SOCK_RAW)}, want: int(unix.EACCES)},
		{name: "UnixRawSendtoDatagramSocketDenied", args: []string{"unix-raw-sendto", victimPath}, want: int(unix.EACCES)},
		{name: "UnixStreamConnectAllowedSocket", args: []string{"connect-unix", f.allowed}, want: 0},
	})
	var buf [16]byte
	if n, _, err := unix.Recvfrom(victim, buf[:], unix.MSG_DONTWAIT); err == nil {
		t.Errorf("the victim received %q from the sandbox", buf[:n])
	}
}

// TestSandboxSharedNetworkBindUnspec is hole 2 of the red team: in the
// host's network namespace the gate took its check from the caller's
// sa_family, and the kernel reads AF_UNSPEC with INADDR_ANY as AF_INET,
// so any port could be bound on 0.0.0.0. The twins bind the allowed port
// with AF_INET and with AF_UNSPEC.
func TestSandboxSharedNetworkBindUnspec(t *testing.T) {
	f := newFixture(t)
	in := f.in
	in.SharedNetwork = true
	allowedPort := testkit.FreePort(t)
	in.BindPorts = []int{allowedPort}
	p, err := Build(in, DetectCaps())
	must(t, err)
	if p.Gate.Bind == nil {
		t.Skipf("SKIPPED %s: bind is not gated on this kernel (Landlock ABI %d)", t.Name(), p.Landlock.ABI)
	}
	other := itoa(testkit.FreePort(t))
	allowed := itoa(allowedPort)
	runCases(t, f, in, []probeCase{
		{name: "UnspecTCPOtherPortDenied", args: []string{"bind-raw", "0", "SOCK_STREAM", other}, want: int(unix.EACCES)},
		{name: "UnspecUDPOtherPortDenied", args: []string{"bind-raw", "0", "SOCK_DGRAM", other}, want: int(unix.EACCES)},
		{name: "InetTCPOtherPortDenied", args: []string{"bind-raw", "2", "SOCK_STREAM", other}, want: int(unix.EACCES)},
		{name: "InetTCPAllowedPort", args: []string{"bind-raw", "2", "SOCK_STREAM", allowed}, want: 0},
		{name: "UnspecTCPAllowedPort", args: []string{"bind-raw", "0", "SOCK_STREAM", allowed}, want: 0},
		{name: "UnspecUDPAllowedPort", args: []string{"bind-raw", "0", "SOCK_DGRAM", allowed}, want: 0},
		{name: "UnspecEphemeral", args: []string{"bind-raw", "0", "SOCK_STREAM", "0"}, want: 0},
		{name: "UnixStreamConnectAllowedSocket", args: []string{"connect-unix", f.allowed}, want: 0},
	})
}

// TestSeccompLogsDenialsOnly: the kernel audits a seccomp action per the
// filter whose action won. A run of routine work (gated connects, thread
// and process creation with clone3's ENOSYS, openat2's ENOSYS) must add
// no record; the one real denial at its end must add at least one, which
// also shows that the kernel log was readable and not rate-limited for
// that run.
func TestSeccompLogsDenialsOnly(t *testing.T) {
	f := newFixture(t)
	if b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_logged"); err != nil ||
		!strings.Contains(string(b), "errno") || !strings.Contains(string(b), "user_notif") {
		t.Skipf("SKIPPED %s: kernel.seccomp.actions_logged = %q (%v): routine records could not show", t.Name(), b, err)
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { tcp.Close() })
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	record := regexp.MustCompile(`type=1326 .* exe="` + regexp.QuoteMeta(f.probe) + `" .* syscall=(\d+) `)
	for attempt := 1; ; attempt++ {
		kmsg, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Skipf("SKIPPED %s: the kernel log is unreadable: %v", t.Name(), err)
		}
		_, err = unix.Seek(kmsg, 0, unix.SEEK_END)
		must(t, err)
		got := f.run(t, f.in, "routine-then-deny", f.allowed, tcp.Addr().String())
		if got != 0 {
			unix.Close(kmsg)
			t.Fatalf("routine-then-deny: %d (%s); see stderr", got, errnoName(got))
		}
		time.Sleep(300 * time.Millisecond) // kauditd prints asynchronously
		bySyscall := map[string]int{}
		buf := make([]byte, 8192)
		for {
			n, err := unix.Read(kmsg, buf)
			if errors.Is(err, unix.EPIPE) {
				continue // overwritten records: read on
			}
			if err != nil || n <= 0 {
				break
			}
			if m := record.FindSubmatch(buf[:n]); m != nil {
				bySyscall[string(m[1])]++
			}
		}
		unix.Close(kmsg)
		deny := itoa(unix.SYS_UNSHARE)
		denials := bySyscall[deny]
		delete(bySyscall, deny)
		if len(bySyscall) > 0 {
			// Seen routine records fail whatever else: they are also what
			// eats the kernel's printk rate limit before real denials.
			t.Errorf("routine work was audited: records by syscall number %v (435 clone3, 42 connect, 437 openat2), want none; the denial left %d", bySyscall, denials)
			return
		}
		if denials == 0 {
			if attempt < 3 {
				t.Logf("attempt %d: no record at all, not even of the denial (the kernel's printk rate limit?); waiting", attempt)
				time.Sleep(6 * time.Second)
				continue
			}
			t.Skipf("SKIPPED %s: the denied unshare left no record in the kernel log in %d attempts (rate-limited or not logged): a count of zero routine records would mean nothing", t.Name(), attempt)
		}
		return
	}
}
