package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ocnix/ocnix/sandbox/unixgate"
	"golang.org/x/sys/unix"
)

// supervise starts the server on a confined thread of its own (see
// confineAndStart) and serves its connects until it exits.
func supervise(ctx context.Context, plan Plan, cmd Command, id identity, log *slog.Logger) (int, error) {
	ns, err := openCallerNS()
	if err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}
	defer ns.close()
	dir := cmd.Dir
	if dir == "" {
		// The confining thread may join another mount namespace, which
		// resets its working directory; keep the caller's.
		if dir, err = os.Getwd(); err != nil {
			return -1, fmt.Errorf("sandbox: instance %q: working directory: %w", plan.Instance, err)
		}
	}
	filter, err := compileSeccomp(plan.Seccomp)
	if err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}
	if !filter.Notify {
		return -1, bug(fmt.Errorf("gate mode %q but the filter has no notify rule", plan.Gate.Mode))
	}

	// Catch the signals before the child exists, so none is lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer signal.Stop(sigs)

	startc := make(chan started, 1)
	release := make(chan struct{})
	go confineAndStart(plan, cmd, dir, id, filter, ns, startc, release)
	st := <-startc
	if st.err != nil {
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, st.err)
	}
	// Registered first, so it runs last: the confined thread that forked
	// the child (and ties its PR_SET_PDEATHSIG) ends only once the child
	// has been reaped and the gate has stopped.
	defer close(release)
	pid := st.proc.Pid

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
	return waitChild(st.proc), nil
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
		case <-ctx.Done():
			unix.Kill(pid, unix.SIGTERM)
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
func waitChild(p *os.Process) int {
	ps, err := p.Wait()
	if err != nil {
		return -1
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return -1
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
