package pidinit

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// initPIDNSInode is PROC_PID_INIT_INO: the inode of the host's (initial) PID namespace.
const initPIDNSInode = 0xEFFFFFFC

// forwarded are the signals the init passes on to the launcher. pid 1 gets only signals
// it has a handler for (SIGKILL and SIGSTOP from an ancestor namespace aside), so every
// signal systemd or an operator may send is listed.
var forwarded = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGCONT, unix.SIGWINCH,
}

// Main returns at once unless this process is pid 1. Then it never returns: it starts
// this same program with the same arguments and environment (plus Env) as its child,
// reaps every process of the namespace, forwards signals to the child, and exits with
// the child's status (128+n when killed by signal n). Its exit ends the namespace: the
// kernel kills whatever is left.
func Main() {
	if os.Getpid() != 1 {
		return
	}
	os.Exit(run())
}

func run() int {
	// Not dumpable: processes of the instance's uid in the namespace cannot read its
	// memory or /proc/1/environ, nor trace it.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	child, err := os.StartProcess(self, os.Args, &os.ProcAttr{
		Env:   append(os.Environ(), Env+"=1"),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "opencode-launcher: pid 1: start the launcher: %v\n", err)
		return 71 // EX_OSERR
	}
	pid := child.Pid
	go func() {
		for s := range sigs {
			_ = unix.Kill(pid, s.(unix.Signal))
			if s == unix.SIGTERM {
				_ = unix.Kill(pid, unix.SIGCONT) // a stopped launcher sees it only once continued
			}
		}
	}()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			// ECHILD: the child is gone without our seeing it; nothing can be learned.
			fmt.Fprintf(os.Stderr, "opencode-launcher: pid 1: wait: %v\n", err)
			return 71
		case wpid != pid:
			continue // an orphan reaped
		case ws.Signaled():
			return 128 + int(ws.Signal())
		case ws.Exited():
			return ws.ExitStatus()
		}
	}
}

// InOwnNamespace reports whether this process runs in a PID namespace that is not the
// host's, under the init of this package (Env set by it, and pid 1 is not us).
func InOwnNamespace() bool {
	if os.Getenv(Env) != "1" || os.Getpid() == 1 {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return false
	}
	return st.Ino != initPIDNSInode
}
