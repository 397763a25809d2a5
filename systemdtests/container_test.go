//go:build linux

package systemdtests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The container's view of the files the rendered units name (store-paths.tsv).
const (
	binDir      = "/opt/ocnix-test/bin"
	launcher    = binDir + "/opencode-launcher"
	probe       = binDir + "/probe"
	unitsDir    = "/opt/ocnix-test/units"
	opencodeBin = "/opt/ocnix/opencode-bin"
)

// Generous bounds for a loaded 2-core machine; only the wait for a condition
// uses them, never a fixed sleep.
const (
	bootTimeout  = 3 * time.Minute
	startTimeout = 4 * time.Minute
	cmdTimeout   = 2 * time.Minute
)

var (
	ct *container
	// skipReason is set when this machine cannot run the tier; every test skips
	// with it, loudly.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("OCNIX_SYSTEMD_TIER") != "1" {
		skipReason = "the systemd tier boots a container; it runs with `make test-systemd` (OCNIX_SYSTEMD_TIER=1)"
		return m.Run()
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemdtests:", err)
		return 1
	}
	// Stale units test an old module: refuse before booting anything.
	if msg := checkRendered(repo); msg != "" {
		fmt.Fprintln(os.Stderr, "systemdtests: FAIL:", msg)
		return 1
	}
	if skipReason = missingPiece(); skipReason != "" {
		fmt.Fprintf(os.Stderr, "\n*** systemdtests: SKIPPED the systemd tier: %s ***\n\n", skipReason)
		return m.Run()
	}
	c, err := boot(repo)
	if c != nil {
		defer c.shutdown()
		// An interrupted run still powers the container off.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			c.shutdown()
			os.Exit(1)
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemdtests: FAIL: boot:", err)
		if c != nil {
			c.dumpLog()
		}
		return 1
	}
	ct = c
	code := m.Run()
	if err := c.shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "systemdtests: FAIL: cleanup:", err)
		return 1
	}
	return code
}

// checkRendered compares the committed units' input hash with the inputs now.
func checkRendered(repo string) string {
	want, err := os.ReadFile(filepath.Join(repo, "systemdtests/units/INPUTS"))
	if err != nil {
		return "systemdtests/units/INPUTS is missing: run systemdtests/render.sh NIXPKGS_LIB_DIR and commit systemdtests/units"
	}
	got, err := exec.Command("bash", filepath.Join(repo, "systemdtests/inputs-hash.sh")).Output()
	if err != nil {
		return "systemdtests/inputs-hash.sh: " + err.Error()
	}
	if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		return "nixmodule/ or the systemd tier's fixtures changed since the units were rendered: run systemdtests/render.sh NIXPKGS_LIB_DIR and commit systemdtests/units (see systemdtests/README.md)"
	}
	return ""
}

// missingPiece names what this machine lacks to boot the container, or "".
func missingPiece() string {
	if os.Geteuid() != 0 {
		return "needs root (systemd-nspawn, namespaces, the launcher's setup); run: sudo make test-systemd"
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: apt-get install systemd-container util-linux (or make deps)"
		}
	}
	if _, err := os.Stat(opencodeBin); err != nil {
		return opencodeBin + " not found: run scripts/install-deps.sh (make deps)"
	}
	if out, err := exec.Command("unshare", "--mount", "--pid", "--net", "--fork", "true").CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create mount/pid/net namespaces here (%v: %s)", err, bytes.TrimSpace(out))
	}
	return ""
}

type container struct {
	name    string
	root    string
	tmp     string // host directory with the binaries and nspawn's log
	cmd     *exec.Cmd
	logPath string
	leader  int // the container's PID 1, as seen from the host
	done    chan struct{}
	stopped bool
}

// boot builds (or reuses) the Debian root, starts systemd in it and waits until
// `systemctl is-system-running` answers.
func boot(repo string) (*container, error) {
	launcherHost := os.Getenv("OCNIX_LAUNCHER")
	if launcherHost == "" {
		launcherHost = filepath.Join(repo, "bin/opencode-launcher")
	}
	if _, err := os.Stat(launcherHost); err != nil {
		return nil, fmt.Errorf("%s not found: run make build (or set OCNIX_LAUNCHER)", launcherHost)
	}
	tmp, err := os.MkdirTemp("", "ocnix-systemd-")
	if err != nil {
		return nil, err
	}
	c := &container{name: fmt.Sprintf("ocnix-sd-%d", os.Getpid()), tmp: tmp, logPath: filepath.Join(tmp, "nspawn.log"), done: make(chan struct{})}
	bin := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return c, err
	}
	os.Chmod(tmp, 0o755)
	if err := copyFile(launcherHost, filepath.Join(bin, "opencode-launcher")); err != nil {
		return c, err
	}
	// The toolset's ripgrep for the agent scenario; TestUnitsLoadAndStart installs it.
	if err := copyFile("/usr/bin/rg", filepath.Join(bin, "rg")); err != nil {
		return c, fmt.Errorf("the host's ripgrep for the container: %v (run scripts/install-deps.sh)", err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "probe"), "github.com/ocnix/ocnix/e2e/probe")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return c, fmt.Errorf("go build e2e/probe: %v\n%s", err, out)
	}
	opencodeReal, err := filepath.EvalSymlinks(opencodeBin)
	if err != nil {
		return c, err
	}

	t0 := time.Now()
	rootfs := exec.Command("bash", filepath.Join(repo, "systemdtests/rootfs.sh"))
	rootfs.Stderr = os.Stderr
	out, err := rootfs.Output()
	if err != nil {
		return c, fmt.Errorf("systemdtests/rootfs.sh: %v", err)
	}
	c.root = strings.TrimSpace(string(out))
	fmt.Fprintf(os.Stderr, "systemdtests: Debian root %s ready after %s\n", c.root, time.Since(t0).Round(time.Millisecond))

	logf, err := os.Create(c.logPath)
	if err != nil {
		return c, err
	}
	// --volatile=overlay: the cached root stays pristine, writes go to a tmpfs.
	// --private-network: setup's host side (veths, masquerade, forwarding) lands in
	// the container's own network namespace, never on this machine's, and
	// /proc/sys/net is writable there. --register=no --keep-unit: the host has no
	// systemd/machined to register with. --capability=all: setup needs
	// CAP_NET_ADMIN/CAP_SYS_ADMIN for netns and nftables, as on a real host.
	c.cmd = exec.Command("systemd-nspawn", "--boot", "--quiet",
		"--directory="+c.root, "--volatile=overlay", "--machine="+c.name,
		"--register=no", "--keep-unit", "--private-network", "--console=pipe",
		"--capability=all",
		"--bind-ro="+bin+":"+binDir,
		"--bind-ro="+filepath.Join(repo, "systemdtests/units")+":"+unitsDir,
		"--bind-ro="+opencodeReal+":"+opencodeBin,
		// Boot progress in nspawn's log, which a failed boot prints.
		"systemd.show_status=true",
	)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// nspawn's own seccomp allow-list (systemd 252) lacks the Landlock system
	// calls, so the launcher would see Landlock ABI 0 and refuse. The tier tests
	// the units on this kernel, not nspawn's filter: turn that filter off. It is
	// not passed on to the container's systemd, whose units keep their filters.
	c.cmd.Env = append(os.Environ(), "SYSTEMD_SECCOMP=0")
	// Pdeathsig: if this test binary dies (go test's timeout), nspawn dies with it,
	// and the container's PID 1 with nspawn.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t1 := time.Now()
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return c, fmt.Errorf("systemd-nspawn: %v", err)
	}
	go func() { c.cmd.Wait(); logf.Close(); close(c.done) }()

	deadline := time.Now().Add(bootTimeout)
	for c.leader == 0 {
		select {
		case <-c.done:
			return c, fmt.Errorf("systemd-nspawn exited during boot: %v", c.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("no container PID 1 after %s", bootTimeout)
		}
		c.leader = containerInit(c.cmd.Process.Pid)
		if c.leader == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// `is-system-running --wait` blocks until startup finished, whatever the
	// result, once PID 1 listens on its private socket (systemctl's way in
	// without D-Bus).
	for {
		if _, code, _ := c.run(cmdTimeout, "test -S /run/systemd/private"); code == 0 {
			break
		}
		select {
		case <-c.done:
			return c, fmt.Errorf("systemd-nspawn exited during boot: %v", c.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("systemd in the container did not open /run/systemd/private within %s", bootTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	state, code, err := c.run(bootTimeout, "systemctl is-system-running --wait")
	if err != nil {
		return c, fmt.Errorf("systemctl is-system-running: %v", err)
	}
	state = strings.TrimSpace(state)
	fmt.Fprintf(os.Stderr, "systemdtests: container %s booted: is-system-running=%s after %s\n", c.name, state, time.Since(t1).Round(time.Millisecond))
	if an, _, _ := c.run(cmdTimeout, "systemd-analyze time 2>&1 | sed -n 1p"); an != "" {
		fmt.Fprintf(os.Stderr, "systemdtests: %s", an)
	}
	if code != 0 && state != "degraded" {
		return c, fmt.Errorf("systemctl is-system-running = %q (exit %d)", state, code)
	}
	if state == "degraded" {
		failed, _, _ := c.run(cmdTimeout, "systemctl --failed --no-pager --plain")
		return c, fmt.Errorf("the container booted degraded before any ocnix unit was installed:\n%s", failed)
	}
	return c, nil
}

// containerInit returns the child of nspawn that is PID 1 of its own PID
// namespace (NSpid ends in 1), or 0. nspawn's first child is a short-lived
// helper that forks the init and exits: taking it would point every nsenter at
// a process that is gone.
func containerInit(nspawn int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if ns := strings.Fields(strings.TrimPrefix(l, "NSpid:")); strings.HasPrefix(l, "NSpid:") && len(ns) >= 2 && ns[len(ns)-1] == "1" {
				return pid
			}
		}
	}
	return 0
}

// run executes a shell script inside the container, in all its namespaces, as
// root with a clean environment. It returns stdout+stderr and the exit code; err
// is set only when the command could not run or timed out.
func (c *container) run(timeout time.Duration, script string) (string, int, error) {
	var buf bytes.Buffer
	code, err := c.exec(timeout, script, &buf, &buf)
	return buf.String(), code, err
}

// runSplit is run with stdout and stderr apart: a probe's verdict is on stdout,
// the launcher's log lines on stderr.
func (c *container) runSplit(timeout time.Duration, script string) (string, string, int, error) {
	var out, errOut bytes.Buffer
	code, err := c.exec(timeout, script, &out, &errOut)
	return out.String(), errOut.String(), code, err
}

func (c *container) exec(timeout time.Duration, script string, stdout, stderr *bytes.Buffer) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(c.leader), "-a", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
		// pipefail: a failing producer fails the check. Then a reader must
		// read all of its input (grep … >/dev/null, not grep -q; no head):
		// a reader that stops early kills the producer with SIGPIPE (141),
		// which fails a check that matched and passes a mustFail that did.
		"/bin/bash", "-o", "pipefail", "-c", script)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("timed out after %s: %s", timeout, script)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// shutdown powers the container off (SIGTERM to nspawn asks systemd for a clean
// poweroff, which stops the units: teardown runs), kills it if that hangs, and
// checks that nothing of it is left mounted on the host.
func (c *container) shutdown() error {
	if c.stopped {
		return nil
	}
	c.stopped = true
	var errs []error
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(2 * time.Minute):
			errs = append(errs, fmt.Errorf("container %s did not power off within 2m; killed", c.name))
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if (c.root != "" && strings.Contains(l, c.root)) || strings.Contains(l, c.tmp) {
				errs = append(errs, fmt.Errorf("left mounted on the host: %s", l))
			}
		}
	}
	if len(errs) == 0 {
		os.RemoveAll(c.tmp)
	} else {
		c.dumpLog()
	}
	return errors.Join(errs...)
}

func (c *container) dumpLog() {
	if b, err := os.ReadFile(c.logPath); err == nil && len(b) > 0 {
		fmt.Fprintf(os.Stderr, "--- systemd-nspawn output (%s)\n%s\n---\n", c.logPath, b)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
