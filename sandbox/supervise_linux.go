package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/ocnix/ocnix/sandbox/unixgate"
	"golang.org/x/sys/unix"
)

// supervisorGCPercent is the GOGC of a process that has become the
// supervisor, supervisorGCDelay after the server started (see supervise).
const (
	supervisorGCPercent = 25
	supervisorGCDelay   = 500 * time.Millisecond
)

// supervise starts the server on a confined thread of its own (see
// confineAndStart) and serves its connects until it exits.
//
// The independent slow steps run at the same time: compiling the
// seccomp filter (libseccomp), resolving the instance user (NSS) and,
// on the new thread, joining the caller's namespaces and applying
// Landlock (which also checks the paths). Each is about a millisecond.
func supervise(ctx context.Context, plan Plan, cmd Command, log *slog.Logger) (int, error) {
	dir := cmd.Dir
	if dir == "" {
		// The confining thread may join another mount namespace, which
		// resets its working directory; keep the caller's.
		var err error
		if dir, err = os.Getwd(); err != nil {
			return -1, fmt.Errorf("sandbox: instance %q: working directory: %w", plan.Instance, err)
		}
	}
	// The thread that starts the server shares its Landlock domain, so
	// Landlock no longer keeps the server (same uid under systemd User=)
	// out of this process through that thread: /proc/PID/task/TID/mem,
	// ptrace. A process that is not dumpable can only be reached with
	// CAP_SYS_PTRACE. (As root the child's setuid, in the shared memory of
	// the vfork, does the same.)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: make the supervisor non-dumpable: %w", plan.Instance, err)
	}
	ns, err := openCallerNS()
	if err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}
	type compiled struct {
		filter compiledSeccomp
		err    error
	}
	filterc := make(chan compiled, 1)
	go func() {
		f, err := compileSeccomp(plan.Seccomp)
		filterc <- compiled{f, err}
	}()
	inputc := make(chan startInput, 1)
	startc := make(chan started, 1)
	release := make(chan struct{})
	go confineAndStart(plan, cmd, dir, ns, inputc, startc, release) // owns ns
	abort := func(err error) (int, error) {
		inputc <- startInput{err: err} // the confined thread then ends
		if st := <-startc; st.guard > 0 {
			killGuard(st.guard)
		}
		return -1, err
	}

	id, err := identityFor(plan, log)
	if err != nil {
		return abort(err)
	}
	if err := gateUsable(readPtraceScope(), hasCapSysPtrace()); err != nil {
		// Fail closed either way: the gate answers EACCES to what it
		// cannot serve. Refuse when the operator allowed sockets, because
		// the server would start and then fail on every one of them.
		if len(plan.Gate.Allow) > 0 {
			return abort(fmt.Errorf("sandbox: instance %q: sandbox.unixSockets.allow is set but %w", plan.Instance, err))
		}
		log.Warn("sandbox: unix sockets will not work, not even in the instance's own directories: "+err.Error(), "instance", plan.Instance)
	}
	c := <-filterc
	if c.err != nil {
		return abort(fmt.Errorf("sandbox: instance %q: %w", plan.Instance, c.err))
	}
	if !c.filter.Notify() {
		return abort(bug(fmt.Errorf("gate mode %q but the filter has no notify rule", plan.Gate.Mode)))
	}

	// Catch the signals before the child exists, so none is lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGCONT)
	defer signal.Stop(sigs)

	inputc <- startInput{id: id, filter: c.filter}
	st := <-startc
	if st.err != nil {
		if st.guard > 0 {
			killGuard(st.guard)
		}
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, st.err)
	}
	// Registered first, so it runs last: the confined thread that forked
	// the child (and ties its PR_SET_PDEATHSIG) ends only once the child
	// has been reaped and the gate has stopped.
	defer close(release)
	pid := st.pid
	// From here on this process only supervises: its live heap is a few
	// hundred KiB, but the default GOGC lets the gate's per-connect garbage
	// grow the heap to the runtime's 4 MiB minimum before a collection.
	// Collecting at +25% keeps the resident set ~1.5 MiB smaller under a
	// connect storm at no measurable cost in connects per second (README,
	// Benchmarks). Not at once: lowering GOGC right after start-up collects
	// the start-up garbage while the server starts, which costs a short
	// `run` a millisecond. Restored when Run returns, for callers that go on.
	oldGC := make(chan int, 1)
	gcTimer := time.AfterFunc(supervisorGCDelay, func() { oldGC <- debug.SetGCPercent(supervisorGCPercent) })
	defer func() {
		if !gcTimer.Stop() {
			debug.SetGCPercent(<-oldGC)
		}
	}()

	gateCtx, stopGate := context.WithCancel(context.Background())
	gateDone := make(chan error, 1)
	gateStopped := make(chan struct{})
	pol := unixgate.Policy{Instance: plan.Instance, Allow: plan.Gate.Allow, OwnDirs: plan.Gate.OwnDirs, MaxPending: plan.Gate.MaxPending}
	if plan.Gate.Bind != nil {
		pol.Bind = &unixgate.BindPolicy{Ports: plan.Gate.Bind.Ports}
	}
	go func() {
		defer close(gateStopped)
		defer unix.Close(st.nfd)
		gateDone <- unixgate.Serve(gateCtx, st.nfd, pol, log)
	}()
	defer func() {
		// Serve answers or abandons its pending connects before it
		// returns; wait for that so no worker outlives Run.
		stopGate()
		select {
		case <-gateStopped:
		case <-time.After(stopGrace):
			log.Warn("sandbox: unix-socket gate did not stop in time", "instance", plan.Instance)
		}
	}()

	exited := make(chan struct{})
	go forward(ctx, pid, sigs, gateDone, exited, plan.Instance, log)
	waitExit(pid)
	close(exited)
	// Grandchildren do not get PDEATHSIG; end the whole group. The
	// child is a zombie until reaped below, so its pid (the group id)
	// cannot have been reused. (Under systemd, KillMode=control-group
	// also ends what left the group.)
	unix.Kill(-pid, unix.SIGKILL)
	code := waitChild(pid)
	if st.guard > 0 {
		// The rest of the PID namespace, sessions of their own
		// included: the kernel kills everything in it when its init
		// dies. Only after the server is reaped: the dying init waits
		// until every process of its namespace has been, zombies
		// included, and the server's parent is this process.
		killGuard(st.guard)
	}
	return code, nil
}

// waitExit waits until pid has exited without reaping it.
func waitExit(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// forward relays signals to the child, turns ctx cancellation into
// SIGTERM then SIGKILL, and kills the child if the gate stops serving
// (connects would hang forever otherwise: fail closed).
func forward(ctx context.Context, pid int, sigs <-chan os.Signal, gateDone <-chan error, exited <-chan struct{}, instance string, log *slog.Logger) {
	var kill <-chan time.Time
	for {
		select {
		case <-exited:
			return
		case s := <-sigs:
			unix.Kill(pid, s.(syscall.Signal))
			if s == unix.SIGTERM {
				// As systemd does after its KillSignal: a stopped server
				// (it may stop itself) sees the SIGTERM only once continued.
				unix.Kill(pid, unix.SIGCONT)
			}
		case <-ctx.Done():
			unix.Kill(pid, unix.SIGTERM)
			unix.Kill(pid, unix.SIGCONT)
			kill = time.After(stopGrace)
			ctx = context.Background()
		case <-kill:
			unix.Kill(-pid, unix.SIGKILL)
		case err := <-gateDone:
			gateDone = nil
			if err == nil {
				// Every task using the filter is gone: the child and
				// the thread that started it.
				continue
			}
			select {
			case <-exited:
				return
			default:
			}
			log.Error("sandbox: unix-socket gate stopped; killing the server", "instance", instance, "err", err)
			unix.Kill(-pid, unix.SIGKILL)
		}
	}
}

// waitChild reaps the child and maps its status like a shell does:
// the exit code, or 128+signal.
func waitChild(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
