package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// childEnv marks a process as the re-exec'd sandbox child. ChildMain
// removes it before anything else runs, and the target gets
// Command.Env, not this environment.
const childEnv = "OCNIX_SANDBOX_CHILD"

// File descriptors the supervisor hands to the child.
const (
	childPlanFD = 3 // read end of a pipe carrying childPayload as JSON
	childSockFD = 4 // SOCK_SEQPACKET socketpair end back to the supervisor
)

// Messages from the child on childSockFD. EOF without an error message
// means execve succeeded (the socket is close-on-exec).
const (
	msgNotifyFD = 'N' // carries the seccomp notify fd (SCM_RIGHTS)
	msgError    = 'E' // followed by the error text; the child exits
)

// childExitCode is the exit status of a child that could not set up
// the sandbox or exec the target ("command cannot execute").
const childExitCode = 126

// childPayload is everything the child needs. It travels as JSON so
// the child parses no flags and reads no files before Landlock.
type childPayload struct {
	Landlock LandlockPlan   `json:"landlock"`
	Seccomp  compiledFilter `json:"seccomp"`
	OwnDirs  []string       `json:"ownDirs"` // see openPathRules
	Cmd      Command        `json:"cmd"`
	ID       identity       `json:"id"`
	Parent   int            `json:"parent"` // the supervisor's pid
}

func init() {
	// PR_SET_PDEATHSIG fires when the parent *thread* exits. Locking
	// the main goroutine to the main thread during init keeps the
	// thread that forks (when Run is called from main) alive for the
	// whole life of the process. It also makes ChildMain run there.
	runtime.LockOSThread()
}

// ChildMain is called first thing in main(). If this process is a
// re-exec'd sandbox child, it applies the plan and execs the target,
// never returning; otherwise it returns at once.
//
// A child that cannot confine itself exits with status 126 and never
// runs the target.
func ChildMain() {
	if os.Getenv(childEnv) == "" {
		return
	}
	os.Unsetenv(childEnv)
	err := childRun()
	// Only reached on failure. Tell the supervisor; stderr as backup.
	msg := fmt.Sprintf("%v", err)
	_ = unix.Sendmsg(childSockFD, append([]byte{msgError}, msg...), nil, nil, 0)
	fmt.Fprintf(os.Stderr, "opencode-launcher: sandbox child: %s\n", msg)
	os.Exit(childExitCode)
}

func childRun() error {
	runtime.LockOSThread()
	f := os.NewFile(childPlanFD, "plan")
	var pl childPayload
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pl); err != nil {
		return fmt.Errorf("sandbox: read plan from supervisor: %w", err)
	}
	f.Close()
	if unix.Getppid() != pl.Parent {
		return fmt.Errorf("sandbox: parent %d is not the supervisor %d", unix.Getppid(), pl.Parent)
	}
	// Order matters (see the package documentation, "Child order").
	// Everything happens on this locked thread, which execs at the end.
	if err := applyLandlock(pl.Landlock, pl.OwnDirs); err != nil {
		return err
	}
	nfd, err := loadSeccomp(pl.Seccomp)
	if err != nil {
		return err
	}
	// Nothing that can call connect(2) may run between Load and this
	// send: it would wait for a supervisor that has no fd yet.
	if nfd >= 0 {
		if err := unix.Sendmsg(childSockFD, []byte{msgNotifyFD}, unix.UnixRights(nfd), nil, 0); err != nil {
			return fmt.Errorf("sandbox: send notify fd to supervisor: %w", err)
		}
		unix.Close(nfd)
	} else {
		return bug(fmt.Errorf("supervised child but the filter has no notify rule"))
	}
	if err := dropPrivileges(pl.ID); err != nil {
		return err
	}
	// setresuid cleared any parent-death signal; arm it now and then
	// check the parent did not die before it was armed.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: set parent-death signal: %w", err)
	}
	if unix.Getppid() != pl.Parent {
		return fmt.Errorf("sandbox: supervisor %d died during setup", pl.Parent)
	}
	return execTarget(pl.Cmd)
}

// execTarget replaces this process with cmd. Every fd from 3 up is
// marked close-on-exec first, so nothing of the launcher leaks in
// (the notify fd, the plan pipe, Go runtime fds).
func execTarget(cmd Command) error {
	if cmd.Dir != "" {
		if err := unix.Chdir(cmd.Dir); err != nil {
			return fmt.Errorf("sandbox: chdir %q: %w", cmd.Dir, err)
		}
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("sandbox: mark fds close-on-exec: %w", err)
	}
	err := unix.Exec(cmd.Path, cmd.Args, cmd.Env)
	return fmt.Errorf("sandbox: exec %q: %w", cmd.Path, err)
}
