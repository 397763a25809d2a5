package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/ocnix/ocnix/sandbox/unixgate"
	"golang.org/x/sys/unix"
)

// supervise starts the sandbox child and serves its connects until it
// exits.
func supervise(ctx context.Context, plan Plan, cmd Command, id identity, log *slog.Logger) (int, error) {
	// PR_SET_PDEATHSIG fires when the forking thread ends, and the Go
	// runtime ends a thread whose goroutine exits locked. Keep this
	// goroutine on its thread until the child is reaped (nested with
	// the caller's own lock, if any, e.g. after joining a netns).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	sock := os.NewFile(uintptr(fds[0]), "sandbox-supervisor")
	defer sock.Close()
	childSock := os.NewFile(uintptr(fds[1]), "sandbox-child")
	planR, planW, err := os.Pipe()
	if err != nil {
		childSock.Close()
		return -1, fmt.Errorf("sandbox: pipe: %w", err)
	}

	// Catch the signals before the child exists, so none is lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer signal.Stop(sigs)

	c := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{os.Args[0]},
		Env:        []string{childEnv + "=1"},
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{planR, childSock}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{
			// Own session: own process group to kill at the end, and
			// no controlling terminal, so the terminal's SIGINT reaches
			// only the supervisor (which forwards it once).
			Setsid:    true,
			Pdeathsig: unix.SIGKILL, // until the child re-arms it after setresuid
		},
	}
	// Start forks on this goroutine's thread: netns and PDEATHSIG
	// follow the thread.
	err = c.Start()
	planR.Close()
	childSock.Close()
	if err != nil {
		planW.Close()
		return -1, fmt.Errorf("sandbox: instance %q: start sandbox child: %w", plan.Instance, err)
	}
	pid := c.Process.Pid
	// A child that neither reports nor dies must not hang the launcher.
	tv := unix.NsecToTimeval(setupTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(int(sock.Fd()), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Kill(-pid, unix.SIGKILL)
		waitChild(c)
		return -1, fmt.Errorf("sandbox: set receive timeout: %w", err)
	}
	// Compile while the child starts up; it waits for the payload.
	payload, err := childPayloadFor(plan, cmd, id)
	if err == nil {
		_, err = planW.Write(payload)
	}
	planW.Close()
	if err != nil {
		unix.Kill(-pid, unix.SIGKILL)
		waitChild(c)
		return -1, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}

	nfd, err := recvNotifyFD(sock)
	if err != nil {
		var ce childError
		if !errors.As(err, &ce) {
			// No report: do not wait for a child that may hang.
			unix.Kill(-pid, unix.SIGKILL)
		}
		code := waitChild(c)
		return code, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	}

	gateCtx, stopGate := context.WithCancel(context.Background())
	gateDone := make(chan error, 1)
	gateStopped := make(chan struct{})
	pol := unixgate.Policy{Instance: plan.Instance, Allow: plan.Gate.Allow, OwnDirs: plan.Gate.OwnDirs, MaxPending: plan.Gate.MaxPending}
	if plan.Gate.Bind != nil {
		pol.Bind = &unixgate.BindPolicy{Ports: plan.Gate.Bind.Ports}
	}
	go func() {
		defer close(gateStopped)
		defer unix.Close(nfd)
		gateDone <- unixgate.Serve(gateCtx, nfd, pol, log)
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

	// The second message tells whether execve happened (EOF) or the
	// child failed after the fd was sent.
	if msg, err := recvStatus(sock); err != nil {
		unix.Kill(-pid, unix.SIGKILL)
		code := waitChild(c)
		return code, fmt.Errorf("sandbox: instance %q: %w", plan.Instance, err)
	} else if msg != "" {
		code := waitChild(c) // it exits on its own after reporting
		return code, fmt.Errorf("sandbox: instance %q: sandbox child: %s", plan.Instance, msg)
	}

	exited := make(chan struct{})
	go forward(ctx, pid, sigs, gateDone, exited, plan.Instance, log)
	waitExit(pid)
	close(exited)
	// Grandchildren do not get PDEATHSIG; end the whole group. The
	// child is a zombie until reaped below, so its pid (the group id)
	// cannot have been reused. (Under systemd, KillMode=control-group
	// also ends what left the group.)
	unix.Kill(-pid, unix.SIGKILL)
	return waitChild(c), nil
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
				// Every task using the filter is gone: the child is
				// exiting and Wait will see it.
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

// recvNotifyFD reads the child's first message: the notify fd, or the
// reason it could not set up the sandbox.
func recvNotifyFD(sock *os.File) (int, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, err := recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("receive notify fd from sandbox child: %w", err)
	}
	if n == 0 {
		return -1, errors.New("sandbox child exited before confining itself")
	}
	if buf[0] == msgError {
		return -1, childError(buf[1:n])
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, bug(fmt.Errorf("notify fd message: %d control messages: %v", len(msgs), err))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 || buf[0] != msgNotifyFD {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, bug(fmt.Errorf("notify fd message: %d fds, tag %q: %v", len(fds), buf[0], err))
	}
	return fds[0], nil
}

// recvStatus waits for execve: EOF means the target runs; a message
// is the child's error.
func recvStatus(sock *os.File) (string, error) {
	buf := make([]byte, 4096)
	n, _, err := recvmsg(sock, buf, nil, 0)
	if err != nil {
		return "", fmt.Errorf("wait for sandbox child to exec: %w", err)
	}
	if n == 0 {
		return "", nil
	}
	if buf[0] != msgError {
		return "", bug(fmt.Errorf("unexpected message %q from sandbox child", buf[0]))
	}
	return string(buf[1:n]), nil
}

// waitChild reaps the child and maps its status like a shell does:
// the exit code, or 128+signal.
func waitChild(c *exec.Cmd) int {
	err := c.Wait()
	ws, ok := c.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return -1
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && !ws.Exited() {
		return -1
	}
	return ws.ExitStatus()
}

// recvmsg retries on EINTR: with SO_RCVTIMEO set the kernel does not
// restart it, and the Go runtime signals threads (preemption) often.
func recvmsg(sock *os.File, buf, oob []byte, flags int) (int, int, error) {
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, flags)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return 0, 0, fmt.Errorf("sandbox child did not report within %s: %w", setupTimeout, err)
		}
		return n, oobn, err
	}
}

// childError is the reason the child reported before exiting.
type childError string

func (e childError) Error() string { return "sandbox child: " + string(e) }

func childPayloadFor(plan Plan, cmd Command, id identity) ([]byte, error) {
	filter, err := compileSeccomp(plan.Seccomp)
	if err != nil {
		return nil, err
	}
	if !filter.Notify {
		return nil, bug(fmt.Errorf("gate mode %q but the filter has no notify rule", plan.Gate.Mode))
	}
	b, err := json.Marshal(childPayload{Landlock: plan.Landlock, Seccomp: filter, OwnDirs: plan.Gate.OwnDirs, Cmd: cmd, ID: id, Parent: os.Getpid()})
	if err != nil {
		return nil, bug(fmt.Errorf("marshal plan: %w", err))
	}
	return b, nil
}
