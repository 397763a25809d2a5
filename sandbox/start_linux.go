package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Securebits that would let capabilities survive the child's switch
// away from uid 0 (linux/securebits.h).
const (
	secbitNoSetuidFixup = 1 << 2
	secbitKeepCaps      = 1 << 4
)

// startInput is what the confining thread needs once its namespaces
// and Landlock are in place; err aborts it.
type startInput struct {
	id     identity
	filter compiledSeccomp
	err    error
}

// started is what the confining thread reports to the supervisor. guard
// is set on error too, once the guard exists.
type started struct {
	pid   int
	guard int // the PID namespace's init, or -1
	nfd   int // the seccomp user-notification fd
	err   error
}

// callerNS holds the calling thread's mount, IPC and network namespaces
// (the launcher joins the instance's netns and makes a private /proc and
// IPC namespace on its locked thread). The confining thread is a new OS
// thread and joins them, so Run keeps forking "from the caller's thread".
// The mount namespace comes first: setns to it needs a filesystem
// context of the thread's own.
type callerNS []nsRef

type nsRef struct {
	fd   int
	name string // as in /proc/thread-self/ns/
	typ  int
}

var joinedNS = []nsRef{{-1, "mnt", unix.CLONE_NEWNS}, {-1, "ipc", unix.CLONE_NEWIPC}, {-1, "net", unix.CLONE_NEWNET}}

func openCallerNS() (callerNS, error) {
	ns := make(callerNS, 0, len(joinedNS))
	for _, n := range joinedNS {
		fd, err := unix.Open("/proc/thread-self/ns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ns.close()
			return nil, fmt.Errorf("sandbox: open the calling thread's %s namespace: %w", n.name, err)
		}
		n.fd = fd
		ns = append(ns, n)
	}
	return ns, nil
}

func (ns callerNS) close() {
	for _, n := range ns {
		if n.fd >= 0 {
			unix.Close(n.fd)
		}
	}
}

// join makes the calling (new, locked) thread share the caller's
// namespaces. Only namespaces that differ are entered: setns needs
// CAP_SYS_ADMIN, which the launcher lacks under systemd User=, where
// the unit puts the whole process in its namespaces.
func (ns callerNS) join() error {
	for _, n := range ns {
		var want, have unix.Stat_t
		if err := unix.Fstat(n.fd, &want); err != nil {
			return fmt.Errorf("sandbox: stat the caller's %s namespace: %w", n.name, err)
		}
		if err := unix.Stat("/proc/thread-self/ns/"+n.name, &have); err != nil {
			return fmt.Errorf("sandbox: stat this thread's %s namespace: %w", n.name, err)
		}
		if want.Dev == have.Dev && want.Ino == have.Ino {
			continue
		}
		if n.typ == unix.CLONE_NEWNS {
			// setns to a mount namespace needs a filesystem context
			// (root, cwd) of this thread's own.
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("sandbox: unshare the filesystem context: %w", err)
			}
		}
		if err := unix.Setns(n.fd, n.typ); err != nil {
			return fmt.Errorf("sandbox: join the caller's %s namespace: %w", n.name, err)
		}
	}
	return nil
}

// confineAndStart runs as its own goroutine. It locks itself to a new
// OS thread, confines that thread (namespaces, Landlock, seccomp,
// capabilities) and starts cmd from it: a forked child inherits the
// Landlock domain, seccomp filters, no_new_privs and namespaces of the
// thread that forks, not of the process. The supervisor's other
// threads stay unconfined, and no second Go program starts. It closes
// ns.
//
// The thread is never unlocked: the Go runtime ends a thread whose
// goroutine exits locked, so the confined thread is never reused. It
// waits on release until the child has been reaped, because
// PR_SET_PDEATHSIG fires when the thread that forked the child exits.
func confineAndStart(plan Plan, cmd Command, dir string, ns callerNS, in <-chan startInput, out chan<- started, release <-chan struct{}) {
	runtime.LockOSThread()
	s := confineThreadAndStart(plan, cmd, dir, ns, in)
	out <- s
	if s.err == nil {
		<-release
	}
}

func confineThreadAndStart(plan Plan, cmd Command, dir string, ns callerNS, in <-chan startInput) started {
	guard := -1
	// The guard is killed by the supervisor, not here: once Landlock
	// applies (ABI ≥ 6), its signal scope keeps this thread from
	// signalling a process outside its domain, which the guard is.
	fail := func(err error) started { return started{pid: -1, guard: guard, nfd: -1, err: err} }
	err := ns.join()
	ns.close()
	if err != nil {
		return fail(err)
	}
	// Order matters (see the package documentation, "Start-up order").
	if plan.PIDNamespace {
		// Before seccomp and Landlock, which forbid it.
		if guard, err = pidNamespace(); err != nil {
			return fail(err)
		}
	}
	// After the guard's mount: Landlock rules hold the inodes they were
	// opened at, so /proc must be the namespace's own by now.
	if err := applyLandlock(plan.Landlock, plan.Gate.OwnDirs); err != nil {
		return fail(err)
	}
	input := <-in
	if input.err != nil {
		return fail(input.err)
	}
	cred, err := prepareCredentials(input.id)
	if err != nil {
		return fail(err)
	}
	nfd, err := loadSeccompAll(input.filter)
	if err != nil {
		return fail(err)
	}
	if nfd < 0 {
		return fail(bug(errors.New("supervised start but the filter has no notify rule")))
	}
	// Nothing of the launcher may leak into the server: Go opens its
	// own fds close-on-exec, but inherited ones or cgo's may not be.
	// Files lists the only fds the child gets.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		unix.Close(nfd)
		return fail(fmt.Errorf("sandbox: mark fds close-on-exec: %w", err))
	}
	scopefd := -1
	if plan.Landlock.Scoped&ll.ScopeSignal != 0 {
		// The server's own signal scope, one domain below this thread's
		// (see ocnix_server_args.scopefd). Close-on-exec, like every
		// ruleset fd.
		if scopefd, err = ll.LandlockCreateRuleset(&ll.RulesetAttr{Scoped: ll.ScopeSignal}, 0); err != nil {
			unix.Close(nfd)
			return fail(fmt.Errorf("sandbox: landlock ruleset for the server's signal scope: %w", err))
		}
		defer unix.Close(scopefd)
	}
	// One start for both cases, in C (startServer): Go's ForkExec has no
	// hook for the scope's landlock_restrict_self between fork and exec,
	// and its parent-death check fails in a PID namespace.
	pid, err := startServer(cmd, dir, cred, scopefd)
	if err != nil {
		unix.Close(nfd)
		return fail(err)
	}
	return started{pid: pid, guard: guard, nfd: nfd}
}

// pidNamespace gives the calling (locked, still unconfined) thread a PID
// namespace for its children and a mount namespace of its own whose /proc
// is that PID namespace's, mounted by the namespace's init, the guard
// (see startGuard). It returns the guard's pid.
//
// The mount namespace is a copy of the one the thread joined (the
// launcher's private /proc), so that the new /proc replaces nothing for
// any other thread: the launcher's thread keeps its own, and the gate's
// goroutines, on other threads of the launcher's original mount
// namespace, keep resolving callers by host pid. Every mount in the copy
// is made a slave first, so the mount cannot propagate back, even when
// Run was called in the host's mount namespace.
//
// Only this thread's pid_ns_for_children changes: the thread itself has
// no pid in the new namespace, so /proc/self does not resolve on it from
// now on (nothing on it reads /proc after this). The Go runtime never
// clones a thread from a locked one (it asks its template thread), which
// the kernel would refuse now.
func pidNamespace() (int, error) {
	// CLONE_NEWNS also unshares the filesystem context (root, cwd).
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return -1, fmt.Errorf("sandbox: make a mount namespace for the PID namespace's /proc (needs root): %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return -1, fmt.Errorf("sandbox: make / a slave mount: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWPID); err != nil {
		return -1, fmt.Errorf("sandbox: make a PID namespace (needs root): %w", err)
	}
	return startGuard()
}

// prepareCredentials readies the confining thread for the user switch
// and returns what the forked child must switch to (nil: nothing).
//
// As root, the child switches itself (Go's fork child: setgroups,
// setgid, setuid, all before execve), so this thread keeps uid 0 and
// the server, running as the instance user, cannot signal or otherwise
// reach it. Leaving uid 0 clears the permitted, effective and ambient
// capabilities unless securebits keep them: refuse those. Inheritable
// and ambient capabilities are cleared here, on this thread only.
//
// Started as the instance user, there is nothing to switch: this
// thread drops every capability and becomes exactly what the server
// will be.
func prepareCredentials(id identity) (*syscall.Credential, error) {
	if !id.Drop {
		return nil, dropCapabilities(id)
	}
	bits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: read securebits: %w", err)
	}
	if bits&(secbitKeepCaps|secbitNoSetuidFixup) != 0 {
		return nil, fmt.Errorf("sandbox: securebits %#x keep capabilities across the switch to the instance user (SecureBits=keep-caps or no-setuid-fixup): refusing to run", bits)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("sandbox: clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("sandbox: capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("sandbox: clear inheritable capabilities: %w", err)
	}
	groups := make([]uint32, len(id.Groups))
	for i, g := range id.Groups {
		groups[i] = uint32(g)
	}
	return &syscall.Credential{Uid: uint32(id.UID), Gid: uint32(id.GID), Groups: groups}, nil
}

// execTarget replaces this process with cmd (the Landlock ABI ≥ 9
// path). Every fd from 3 up is marked close-on-exec first, so nothing
// of the launcher leaks in.
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
