//go:build linux

package kerneltests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	cacheDir = "/var/cache/ocnix-kernels"
	tierEnv  = "OCNIX_KERNEL_TIER"
	// requireEnv is testkit.RequireRootEnv: in CI a tier that cannot run fails.
	requireEnv = "OCNIX_TEST_REQUIRE_ROOT"
	// bootTimeout bounds one guest from power-on to power-off. Under TCG on
	// two cores a guest takes about two minutes; a hung test is cut off by its
	// own -test.timeout first, so this only catches a hung kernel or init.
	bootTimeout = 9 * time.Minute
	marker      = "OCNIX-KT"
)

// kernelSeries are the releases the tier boots, by prefix of the release:
// Debian 12's stock kernel (Landlock ABI 2, below the launcher's minimum)
// and bookworm-backports' 6.12 LTS (ABI 6), NixOS's default.
var kernelSeries = []struct {
	prefix   string
	belowMin bool // Landlock ABI below sandbox.MinLandlockABI
}{{"6.1", true}, {"6.12", false}}

// suite is one test binary run in the guest. run and skip are -test.run and
// -test.skip; a suite whose selection runs no test fails.
type suite struct {
	name, pkg, run, skip string
	tags                 string
	// belowMin replaces run on a kernel below the launcher's minimum
	// Landlock ABI, where every sandboxed start is refused: only the
	// refusal itself and what needs no sandbox run there.
	belowMin string
}

var suites = []suite{
	// Landlock at the kernel's real ABI, seccomp, the unix gate against
	// real sockets, binds, the PID namespace and its guard, the downgrade
	// table's promises (TestDowngradedPlanKeepsItsWord runs every ABI up
	// to the kernel's). The opencode test needs the 150 MB server binary;
	// the benchmarks are not tests.
	//
	// Left out, with the guest lacking what they need: TestDeveloperToolsWork
	// (node, python3, bash). TestSandboxFilesystem, TestSandboxExecPaths and
	// TestRunExitStatus failed here once, all for reasons outside the
	// product: the guest had no /etc/hostname and a busybox /bin/true
	// (which a copy under another name cannot run), and the selfkill probe
	// raced its own exit against the signal's delivery to another thread.
	{name: "sandbox", pkg: "./sandbox", run: ".", skip: "^(TestOpencodeServesUnderSandbox|TestDeveloperToolsWork)$",
		belowMin: "^(TestRunRefusesPlansThisKernelCannotKeep|TestGateUsableFollowsYama|TestPtraceScopeIsExplained)$"},
	// The gate needs pidfd_open(PIDFD_THREAD) (6.9): below, its tests skip
	// with that reason, and the sandbox suite's refusal covers the start.
	{name: "unixgate", pkg: "./sandbox/unixgate", run: "."},
	// netns + nft egress with a test host that is a netns inside the guest.
	// TestRenderingMatchesKernel needs the guest's /etc/protocols: nft
	// lists protocols by name from it ("meta l4proto tcp", not "6").
	{name: "netpolicy", pkg: "./netpolicy", run: "^(TestEgressAllowedAndBlocked|TestEnterAndVerify|TestTeardownLeavesNothing|TestVerifyFilterRefusesEveryChangeToTheFilter|TestRenderingMatchesKernel)$"},
	// The launcher binary itself: explain against probes, the refusal on 6.1.
	{name: "kerneltests", pkg: "./kerneltests", run: "^TestGuest", tags: "kernelguest"},
}

// modulesWanted are loaded in the guest with their dependencies; a name the
// kernel has built in (or lacks) is left out.
var modulesWanted = []string{
	"veth", "nf_tables", "nft_ct", "nft_reject_inet", "nft_masq", "nft_chain_nat", "nft_nat",
	"nft_log", "nf_log_syslog", "nft_limit", "nft_fib_inet", "nft_quota", "nft_numgen", "nft_counter",
	// netlink.NewHandle opens an XFRM socket too.
	"xfrm_user",
}

type kernel struct {
	release string // uname -r
	vmlinuz string
	modDir  string // lib/modules/<release> of the unpacked package
	// belowMin: the launcher refuses this kernel's Landlock ABI.
	belowMin bool
}

// need skips t loudly with reason, or fails it when CI requires the tier.
func need(t *testing.T, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("FAILED %s: %s, and %s=1 forbids skipping; run: make deps", t.Name(), reason, requireEnv)
	}
	t.Skipf("SKIPPED %s: %s; run: make deps && make test-kernels", t.Name(), reason)
}

func findKernel(series string) (kernel, bool) {
	vms, _ := filepath.Glob(filepath.Join(cacheDir, "*", "boot", "vmlinuz-*"))
	var found []kernel
	for _, v := range vms {
		rel := strings.TrimPrefix(filepath.Base(v), "vmlinuz-")
		if !strings.HasPrefix(rel, series+".") {
			continue
		}
		root := filepath.Dir(filepath.Dir(v))
		found = append(found, kernel{release: rel, vmlinuz: v, modDir: filepath.Join(root, "lib", "modules", rel)})
	}
	if len(found) == 0 {
		return kernel{}, false
	}
	sort.Slice(found, func(i, j int) bool { return found[i].release < found[j].release })
	return found[len(found)-1], true
}

func TestKernels(t *testing.T) {
	if os.Getenv(tierEnv) != "1" {
		t.Skipf("SKIPPED %s: the kernel tier boots QEMU guests for minutes; it runs with `make test-kernels` (%s=1)", t.Name(), tierEnv)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	need(t, err == nil, "qemu-system-x86_64 not found (Debian package qemu-system-x86)")
	_, err = os.Stat("/bin/busybox")
	need(t, err == nil, "/bin/busybox not found (Debian package busybox-static)")
	var kernels []kernel
	for _, s := range kernelSeries {
		k, ok := findKernel(s.prefix)
		need(t, ok, fmt.Sprintf("no unpacked Linux %s kernel package under %s (scripts/install-deps.sh fetches it)", s.prefix, cacheDir))
		k.belowMin = s.belowMin
		kernels = append(kernels, k)
	}

	bins := buildBinaries(t)
	for _, k := range kernels {
		t.Run(k.release, func(t *testing.T) {
			initrd := buildInitramfs(t, k, bins)
			bootAndReport(t, qemu, k, initrd)
		})
	}
}

// buildBinaries compiles the suites' test binaries and the launcher on the
// host; the guest has no Go.
func buildBinaries(t *testing.T) map[string]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	dir := t.TempDir()
	out := map[string]string{}
	build := func(name string, args ...string) {
		start := time.Now()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, b)
		}
		t.Logf("built %s in %v", name, time.Since(start).Round(time.Millisecond))
	}
	for _, s := range suites {
		p := filepath.Join(dir, s.name+".test")
		args := []string{"test", "-c", "-o", p}
		if s.tags != "" {
			args = append(args, "-tags", s.tags)
		}
		build(s.name, append(args, s.pkg)...)
		out[s.name] = p
	}
	p := filepath.Join(dir, "opencode-launcher")
	build("opencode-launcher", "build", "-trimpath", "-o", p, "./cmd/opencode-launcher")
	out["opencode-launcher"] = p
	return out
}

// bootAndReport boots k with initrd, streams its console to a log file and
// turns the suites' verbose output into subtests.
func bootAndReport(t *testing.T, qemu string, k kernel, initrd string) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		// No cmpxchg16b: under QEMU 7.2's TCG, 6.12's SLUB fast path
		// (this_cpu_cmpxchg16b) double-faults with garbage EFLAGS in
		// kmem_cache_alloc or try_to_wake_up, with -cpu max and qemu64
		// alike, one TCG thread or several; without cx16 SLUB takes
		// its locked path. 6.1 ran either way.
		//
		// One TCG thread for both vCPUs: with one host thread per vCPU
		// 6.12 oopsed at boot now and then ("Oops: int3" in
		// sched_clock_cpu, whose bytes were the nop again: a stale
		// translation of a static key's text_poke), and on this two-core
		// host the guests ran about three times slower.
		"-nographic", "-no-reboot", "-m", "1G", "-smp", "2", "-cpu", "qemu64,-cx16",
		"-accel", "tcg,thread=single", "-nic", "none",
		"-kernel", k.vmlinuz, "-initrd", initrd,
		// audit_backlog_limit: the guest has no auditd, and the seccomp
		// denial records of TestSandboxSocketAllowList (about 1800 in a
		// burst) once stalled its probe until the test's 60 s timeout on
		// 6.12 (1 run in 3, with the host loaded); a sender waits up to
		// audit_backlog_wait_time (60 s) when more than the default 64
		// records are queued. Suspected, not proven: see the stop's note.
		"-append", "console=ttyS0 panic=-1 oops=panic rdinit=/init quiet loglevel=4 audit_backlog_limit=65536 lsm=landlock,lockdown,yama,integrity,apparmor")
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	logPath := filepath.Join(cacheDir, "console-"+k.release+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(logf, l)
		lines = append(lines, l)
	}
	waitErr := cmd.Wait()
	t.Logf("guest %s ran %v (console: %s)", k.release, time.Since(start).Round(time.Second), logPath)

	r := parseConsole(lines)
	tail := func() string {
		n := len(lines) - 60
		if n < 0 {
			n = 0
		}
		return strings.Join(lines[n:], "\n")
	}
	if ctx.Err() != nil {
		t.Errorf("guest %s timed out after %v; console tail:\n%s", k.release, bootTimeout, tail())
	}
	if r.panicked {
		t.Errorf("guest %s panicked; console tail:\n%s", k.release, tail())
	}
	if !r.done {
		t.Errorf("guest %s printed no final result (qemu: %v); console tail:\n%s", k.release, waitErr, tail())
	}
	if r.header != "" {
		t.Logf("guest: %s", r.header)
	}
	for _, s := range suites {
		res, ok := r.suites[s.name]
		t.Run(s.name, func(t *testing.T) {
			if !ok {
				t.Fatalf("suite %s did not run in the guest", s.name)
			}
			res.report(t)
		})
	}
}

// suiteResult is one suite's output in the guest.
type suiteResult struct {
	ended bool
	rc    string
	order []string            // top-level tests in the order they ran
	out   map[string][]string // their output
	res   map[string]string   // PASS, FAIL or SKIP
	rest  []string            // lines outside any test
}

type console struct {
	header   string
	done     bool
	panicked bool
	suites   map[string]*suiteResult
}

var (
	runRE    = regexp.MustCompile(`^=== (RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	resultRE = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+)`)
)

func parseConsole(lines []string) console {
	c := console{suites: map[string]*suiteResult{}}
	var cur *suiteResult
	top := ""
	for _, l := range lines {
		if strings.Contains(l, "Kernel panic") {
			c.panicked = true
		}
		// The marker may follow kernel output on the same console line.
		if i := strings.Index(l, marker+" "); i >= 0 {
			f := strings.Fields(l[i+len(marker)+1:])
			switch {
			case len(f) >= 1 && f[0] == "KERNEL":
				c.header = strings.Join(f[1:], " ")
			case len(f) >= 2 && f[0] == "BEGIN":
				cur = &suiteResult{out: map[string][]string{}, res: map[string]string{}}
				c.suites[f[1]] = cur
				top = ""
				continue
			case len(f) >= 3 && f[0] == "END" && cur != nil:
				cur.ended = true
				cur.rc = strings.TrimPrefix(f[2], "rc=")
				cur = nil
				continue
			case len(f) >= 1 && f[0] == "DONE":
				c.done = true
			}
		}
		if cur == nil {
			continue
		}
		if m := runRE.FindStringSubmatch(l); m != nil {
			top = strings.SplitN(m[2], "/", 2)[0]
			if _, seen := cur.out[top]; !seen {
				cur.order = append(cur.order, top)
				cur.out[top] = nil
			}
		}
		if m := resultRE.FindStringSubmatch(l); m != nil && m[1] == "" {
			cur.res[m[3]] = m[2]
			cur.out[m[3]] = append(cur.out[m[3]], l)
			top = ""
			continue
		}
		if top != "" {
			cur.out[top] = append(cur.out[top], l)
		} else {
			cur.rest = append(cur.rest, l)
		}
	}
	return c
}

func (s *suiteResult) report(t *testing.T) {
	failed := false
	for _, name := range s.order {
		out := strings.Join(s.out[name], "\n")
		res := s.res[name]
		if res == "FAIL" || res == "" {
			failed = true
		}
		t.Run(name, func(t *testing.T) {
			switch res {
			case "PASS":
				return
			case "SKIP":
				t.Skipf("skipped in the guest:\n%s", out)
			case "FAIL":
				t.Errorf("failed in the guest:\n%s", out)
			default:
				t.Errorf("no result in the guest (crashed or timed out):\n%s\n%s", out, strings.Join(s.rest, "\n"))
			}
		})
	}
	switch {
	case !s.ended:
		t.Errorf("the suite did not finish in the guest:\n%s", strings.Join(s.rest, "\n"))
	case len(s.order) == 0:
		t.Errorf("the selection ran no test (rc=%s):\n%s", s.rc, strings.Join(s.rest, "\n"))
	case s.rc != "0" && !failed:
		t.Errorf("the test binary exited %s with no failed test:\n%s", s.rc, strings.Join(s.rest, "\n"))
	}
}

// fileHash is a short content hash for the initramfs cache name.
func fileHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// ldLibs lists the shared libraries (and the loader) bin needs, by ldd.
func ldLibs(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil
		}
		t.Fatalf("ldd %s: %v: %s", bin, err, out)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs
}
