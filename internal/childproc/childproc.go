// Package childproc runs a process (an init script) in its own process
// group with a timeout, and keeps the tail of its output for the error
// message.
package childproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Result is how an init script's process ended.
type Result struct {
	Status   int  // exit status; 128+n when killed by signal n
	Signaled bool // killed by a signal
	TimedOut bool // killed by us after the timeout
}

func (r Result) String() string {
	switch {
	case r.TimedOut:
		return "was killed after its timeout"
	case r.Signaled:
		return fmt.Sprintf("was killed by signal %d", r.Status-128)
	}
	return fmt.Sprintf("exited with status %d", r.Status)
}

// drainWait bounds how long we wait for output after the child exited: a
// grandchild that escaped the process group may hold the pipe open forever.
const drainWait = 2 * time.Second

// Run runs cmd in its own process group with combined stdout and stderr
// copied to out, and kills the whole group when the timeout or ctx expires.
// It also kills the group after the child exits, so that a script cannot leave
// a daemon running as the instance user (systemd does the same to a oneshot
// unit's cgroup). PR_SET_PDEATHSIG takes the child down if setup itself is
// killed, so kill -9 of setup never leaves a script running on its own.
func Run(ctx context.Context, cmd *exec.Cmd, timeout time.Duration, out io.Writer) (Result, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("create output pipe: %w", err)
	}
	defer pr.Close()
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = pw, pw

	// Whatever the child leaves behind is re-parented to us, not to init, so
	// that we can end it below: a sandboxed script's background job lives in
	// the sandbox's own process group, out of reach of the group kill.
	if err := becomeSubreaper(); err != nil {
		return Result{}, fmt.Errorf("become the child subreaper: %w", err)
	}
	// The parent-death signal fires when the forking *thread* exits, so the
	// goroutine that starts the child keeps its thread until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return Result{}, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	pgid := cmd.Process.Pid
	copied := make(chan struct{})
	go func() {
		io.Copy(out, pr)
		close(copied)
	}()

	timedOut := make(chan struct{})
	timer := time.AfterFunc(timeout, func() {
		close(timedOut)
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	// Kill leftovers while the exited leader is still a zombie: it pins the
	// process group id, so the kill cannot reach a group that reused it.
	nerr := waitExitedNoReap(pgid)
	timer.Stop()
	stop()
	syscall.Kill(-pgid, syscall.SIGKILL)
	werr := cmd.Wait()
	killOrphans()
	if nerr != nil {
		return Result{}, fmt.Errorf("wait for %s: %w", cmd.Path, nerr)
	}
	select {
	case <-copied:
	case <-time.After(drainWait):
		pr.Close()
		<-copied
	}

	res := Result{}
	select {
	case <-timedOut:
		res.TimedOut = true
	default:
	}
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		ws, ok := ee.Sys().(syscall.WaitStatus)
		switch {
		case ok && ws.Signaled():
			res.Signaled, res.Status = true, 128+int(ws.Signal())
		default:
			res.Status = ee.ExitCode()
		}
	default:
		return res, fmt.Errorf("wait for %s: %w", cmd.Path, werr)
	}
	if ctx.Err() != nil && !res.TimedOut {
		return res, fmt.Errorf("run %s: %w", cmd.Path, ctx.Err())
	}
	return res, nil
}
