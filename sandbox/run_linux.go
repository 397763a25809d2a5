package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// stopGrace is how long Run waits after SIGTERM (on ctx cancel) before
// it kills the server.
const stopGrace = 10 * time.Second

// Run confines cmd with plan and runs it. As root it drops to the
// instance user first.
//
// In gate mode GateSupervisor (Landlock ABI < 9) Run confines a new OS
// thread of the calling process and starts cmd from it (see
// confineAndStart), stays resident as the unix-socket supervisor,
// forwards SIGTERM (then SIGCONT), SIGINT, SIGHUP and SIGCONT, and returns the child's exit
// code (128+signal when it was killed). When ctx is cancelled the child
// gets SIGTERM, then SIGKILL after 10 s. When the child exits, the rest
// of its process group is killed. Every fd of the process from 3 up is
// marked close-on-exec before the start.
//
// In gate mode GateLandlock Run confines the calling process and execs
// cmd: it never returns on success. On error the calling process may
// already be confined and should exit.
//
// The child gets the network and mount namespaces of the calling
// goroutine's OS thread, so a netns or private /proc set up on that
// (locked) thread is inherited.
func Run(ctx context.Context, plan Plan, cmd Command, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkRunnable(plan, cmd); err != nil {
		return -1, err
	}
	cmd.Env = withEnv(cmd.Env, "TMPDIR", plan.TmpDir)
	if plan.PIDNamespace && os.Geteuid() != 0 {
		return -1, fmt.Errorf("sandbox: instance %q: the plan has a PID namespace of its own, which only root can make: build the plan as the user that runs it", plan.Instance)
	}
	if plan.Gate.Mode == GateSupervisor {
		return supervise(ctx, plan, cmd, log)
	}
	id, err := identityFor(plan, log)
	if err != nil {
		return -1, err
	}
	// Check the missing-path and symlink policy before confining
	// anything, so a mistake is reported by a process that can still
	// print it.
	if err := checkPaths(plan.Landlock, plan.Gate.OwnDirs); err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}
	return -1, runDirect(plan, cmd, id)
}

// identityFor resolves the instance user and warns about groups the
// server keeps.
func identityFor(plan Plan, log *slog.Logger) (identity, error) {
	id, err := resolveIdentity(plan)
	if err != nil {
		return id, err
	}
	if len(id.ExtraGroups) > 0 {
		log.Warn("sandbox: the server keeps supplementary groups beyond the user's own (set by whoever started the launcher, e.g. SupplementaryGroups=); they cannot be dropped without root", "instance", plan.Instance, "groups", id.ExtraGroups)
	}
	return id, nil
}

func checkRunnable(plan Plan, cmd Command) error {
	if !filepath.IsAbs(cmd.Path) {
		return fmt.Errorf("sandbox: instance %q: command %q: must be an absolute path", plan.Instance, cmd.Path)
	}
	if len(cmd.Args) == 0 {
		return fmt.Errorf("sandbox: instance %q: command %q: argv is empty", plan.Instance, cmd.Path)
	}
	if !plan.Landlock.keepsFSPromise() {
		// Debian 12's stock 6.1 has ABI 2 and lands here: say which kernel
		// this is and what gets past it, not only the numbers.
		return fmt.Errorf("sandbox: instance %q: plan is for Landlock ABI %d, below the minimum %d, so files outside the read-write paths could be truncated: refusing to run on kernel %s; boot Linux 6.2 or newer (on Debian 12: linux-image-cloud-amd64 or linux-image-amd64 from bookworm-backports) with landlock in the lsm= kernel parameter: %w",
			plan.Instance, plan.Landlock.ABI, MinLandlockABI, kernelRelease(), ErrLandlockTooOld)
	}
	// Only the ABI: DetectCaps would also stat the host layout and read
	// ptrace_scope again, on the start-up path.
	k, err := ll.LandlockGetABIVersion()
	if err != nil {
		k = 0 // ENOSYS or EOPNOTSUPP: no Landlock at all.
	}
	if !plan.Landlock.fitsABI(k) {
		return fmt.Errorf("sandbox: instance %q: plan is for Landlock ABI %d but this kernel has %d: rebuild the plan here", plan.Instance, plan.Landlock.ABI, k)
	}
	if plan.PIDNamespace && plan.Gate.Mode != GateSupervisor {
		return bug(fmt.Errorf("gate mode %q with a PID namespace: only the supervisor holds a guard", plan.Gate.Mode))
	}
	switch plan.Gate.Mode {
	case GateLandlock, GateSupervisor:
	default:
		return bug(fmt.Errorf("gate mode %q: unknown", plan.Gate.Mode))
	}
	return nil
}

// withEnv returns env with key set to value (replacing earlier values).
func withEnv(env []string, key, value string) []string {
	if value == "" {
		return env
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// runDirect is the Landlock ABI ≥ 9 path: no supervisor, the calling
// process confines itself and becomes the target.
func runDirect(plan Plan, cmd Command, id identity) error {
	// Landlock, seccomp and the credential change below act on this
	// OS thread only, and execve must come from the same thread. Never
	// unlocked: on error the thread may be half-confined, and a locked
	// thread is not handed to other goroutines.
	runtime.LockOSThread()
	// Compile first: libseccomp and its memfd need nothing of Landlock.
	filter, err := compileSeccomp(plan.Seccomp)
	if err != nil {
		return err
	}
	if err := applyLandlock(plan.Landlock, plan.Gate.OwnDirs); err != nil {
		return err
	}
	if _, err := loadSeccompAll(filter); err != nil {
		return err
	}
	if err := dropPrivileges(id); err != nil {
		return err
	}
	return execTarget(cmd)
}

// kernelRelease is uname -r, for messages that refuse this kernel.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(uname: " + err.Error() + ")"
	}
	return unix.ByteSliceToString(u.Release[:])
}
