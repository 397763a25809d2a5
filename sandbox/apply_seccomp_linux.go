package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// newSyscalls are syscalls newer than the libseccomp we build against
// (2.5.4). Numbers from 424 on are the same on every architecture.
var newSyscalls = map[string]int{
	"open_tree_attr": 467,
}

func syscallNumber(name string) (seccomp.ScmpSyscall, error) {
	nr, err := seccomp.GetSyscallFromName(name)
	if err == nil {
		return nr, nil
	}
	if n, ok := newSyscalls[name]; ok {
		return seccomp.ScmpSyscall(n), nil
	}
	return 0, bug(fmt.Errorf("syscall %q: unknown to libseccomp: %w", name, err))
}

// errnos are the errno names a plan may use.
var errnos = map[string]unix.Errno{
	"EPERM":           unix.EPERM,
	"EACCES":          unix.EACCES,
	"ENOSYS":          unix.ENOSYS,
	"EAFNOSUPPORT":    unix.EAFNOSUPPORT,
	"EPROTONOSUPPORT": unix.EPROTONOSUPPORT,
	"EOPNOTSUPP":      unix.EOPNOTSUPP,
}

func errnoNumber(name string) (int16, error) {
	e, ok := errnos[name]
	if !ok {
		return 0, bug(fmt.Errorf("errno %q: unknown", name))
	}
	return int16(e), nil
}

func scmpAction(r SyscallRule) (seccomp.ScmpAction, error) {
	switch r.Action {
	case ActionErrno:
		e, err := errnoNumber(r.Errno)
		if err != nil {
			return seccomp.ActInvalid, err
		}
		return seccomp.ActErrno.SetReturnCode(e), nil
	case ActionNotify:
		return seccomp.ActNotify, nil
	case ActionKillProcess:
		return seccomp.ActKillProcess, nil
	case ActionAllow:
		return seccomp.ActAllow, nil
	}
	return seccomp.ActInvalid, bug(fmt.Errorf("seccomp action %q: unknown", r.Action))
}

func scmpCond(c ArgCond) (seccomp.ScmpCondition, error) {
	switch c.Op {
	case OpEqual:
		return seccomp.ScmpCondition{Argument: c.Arg, Op: seccomp.CompareEqual, Operand1: c.Value}, nil
	case OpGreaterEq:
		return seccomp.ScmpCondition{Argument: c.Arg, Op: seccomp.CompareGreaterEqual, Operand1: c.Value}, nil
	case OpMaskedEqual:
		// libseccomp: the first operand is the mask, the second the value.
		return seccomp.ScmpCondition{Argument: c.Arg, Op: seccomp.CompareMaskedEqual, Operand1: c.Mask, Operand2: c.Value}, nil
	}
	return seccomp.ScmpCondition{}, bug(fmt.Errorf("seccomp operator %q: unknown", c.Op))
}

// newFilter builds the libseccomp filter for s without loading it:
// the rules whose Routine equals routine (see SeccompPlan). The caller
// must Release it.
func newFilter(s SeccompPlan, routine bool) (*seccomp.ScmpFilter, error) {
	def, err := scmpAction(SyscallRule{Action: s.DefaultAction})
	if err != nil {
		return nil, err
	}
	f, err := seccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: create filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	bad, err := scmpAction(SyscallRule{Action: s.BadArchAction})
	if err != nil {
		return nil, err
	}
	if err := f.SetBadArchAction(bad); err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: set bad-arch action: %w", err)
	}
	if err := f.SetNoNewPrivsBit(true); err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: set no_new_privs: %w", err)
	}
	// A binary tree of syscall numbers instead of libseccomp's default
	// linear chain: every allowed syscall (read, openat, …) otherwise walks
	// past each of the ~70 denied ones. Older libseccomp lacks it; the
	// filter is the same, only slower.
	_ = f.SetOptimize(2)
	for _, r := range s.Rules {
		if r.Routine != routine {
			continue
		}
		nr, err := syscallNumber(r.Syscall)
		if err != nil {
			return nil, err
		}
		if nr < 0 {
			// libseccomp's pseudo number: the syscall does not exist on
			// this architecture (iopl on arm64), so nothing can call it.
			continue
		}
		act, err := scmpAction(r)
		if err != nil {
			return nil, err
		}
		conds := make([]seccomp.ScmpCondition, 0, len(r.Args))
		for _, c := range r.Args {
			sc, err := scmpCond(c)
			if err != nil {
				return nil, err
			}
			conds = append(conds, sc)
		}
		// Exact: a rule must mean what the plan says on this
		// architecture, not be rewritten by libseccomp.
		if err := f.AddRuleConditionalExact(nr, act, conds); err != nil {
			return nil, fmt.Errorf("sandbox: seccomp: rule %s: %w", r, err)
		}
	}
	ok = true
	return f, nil
}

// compiledFilter is one seccomp filter as a classic BPF program,
// ready for seccomp(2). Compiling in the supervisor keeps libseccomp
// (and its allocations) out of the child and overlaps the work with
// the child's start-up.
type compiledFilter struct {
	BPF    []byte `json:"bpf"` // struct sock_filter array, native endian
	Log    bool   `json:"log"`
	Notify bool   `json:"notify"`
}

// compiledSeccomp is a plan's filters in load order (see SeccompPlan):
// routine, sockets, denials. The kernel walks the newest filter first
// and, between equal actions, keeps the first it walked, so the deny
// filter, loaded last, decides which filter a tie (the bad-arch kill)
// is logged for.
type compiledSeccomp struct {
	Filters []compiledFilter `json:"filters"`
}

// Notify reports whether one of the filters notifies the supervisor.
func (c compiledSeccomp) Notify() bool {
	for _, f := range c.Filters {
		if f.Notify {
			return true
		}
	}
	return false
}

func compileSeccomp(s SeccompPlan) (compiledSeccomp, error) {
	routine, err := exportFilter(s, true)
	if err != nil {
		return compiledSeccomp{}, err
	}
	sockets, err := assembleSocketFilter(s.Sockets)
	if err != nil {
		return compiledSeccomp{}, err
	}
	deny, err := exportFilter(s, false)
	if err != nil {
		return compiledSeccomp{}, err
	}
	routine.Log = false
	sockets.Log, deny.Log = s.Log, s.Log
	for _, r := range s.Rules {
		if r.Action == ActionNotify {
			if !r.Routine {
				return compiledSeccomp{}, bug(fmt.Errorf("seccomp: notify rule %s is not routine: only the routine filter may have the listener", r))
			}
			routine.Notify = true
		}
	}
	return compiledSeccomp{Filters: []compiledFilter{routine, sockets, deny}}, nil
}

// exportFilter compiles the routine or the deny part of s with libseccomp.
func exportFilter(s SeccompPlan, routine bool) (compiledFilter, error) {
	f, err := newFilter(s, routine)
	if err != nil {
		return compiledFilter{}, err
	}
	defer f.Release()
	// libseccomp 2.5 has no export to memory; go through a memfd.
	fd, err := unix.MemfdCreate("ocnix-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return compiledFilter{}, fmt.Errorf("sandbox: seccomp: memfd: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "ocnix-seccomp")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return compiledFilter{}, fmt.Errorf("sandbox: seccomp: export filter: %w", err)
	}
	prog, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return compiledFilter{}, fmt.Errorf("sandbox: seccomp: read exported filter: %w", err)
	}
	if len(prog) == 0 || len(prog)%int(unsafe.Sizeof(unix.SockFilter{})) != 0 {
		return compiledFilter{}, bug(fmt.Errorf("seccomp: exported filter has %d bytes", len(prog)))
	}
	return compiledFilter{BPF: prog}, nil
}

// loadSeccompAll loads c's filters in order on the calling thread and
// returns the user-notification fd (-1 when no filter notifies).
func loadSeccompAll(c compiledSeccomp) (int, error) {
	nfd := -1
	for _, f := range c.Filters {
		fd, err := loadSeccomp(f)
		if err != nil {
			if nfd >= 0 {
				unix.Close(nfd)
			}
			return -1, err
		}
		if fd >= 0 {
			if nfd >= 0 {
				unix.Close(fd)
				unix.Close(nfd)
				return -1, bug(fmt.Errorf("seccomp: two filters with a listener"))
			}
			nfd = fd
		}
	}
	return nfd, nil
}

// loadSeccomp installs the filter on the calling thread (the one that
// will execve; see applyLandlock for why one thread is enough). It
// returns the user-notification fd when the filter notifies, else -1.
func loadSeccomp(c compiledFilter) (int, error) {
	n := len(c.BPF) / int(unsafe.Sizeof(unix.SockFilter{}))
	if n == 0 || n > 0xffff {
		return -1, bug(fmt.Errorf("seccomp: filter of %d instructions", n))
	}
	prog := unix.SockFprog{Len: uint16(n), Filter: (*unix.SockFilter)(unsafe.Pointer(&c.BPF[0]))}
	var flags uintptr
	if c.Log {
		flags |= unix.SECCOMP_FILTER_FLAG_LOG
	}
	if c.Notify {
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("sandbox: set no_new_privs: %w", err)
	}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(c.BPF)
	if e != 0 {
		if e == unix.EBUSY {
			return -1, fmt.Errorf("sandbox: seccomp: load filter: another user-notification filter is already installed (is the launcher running inside a notify-based sandbox?): %w", e)
		}
		return -1, fmt.Errorf("sandbox: seccomp: load filter: %w", e)
	}
	if !c.Notify {
		return -1, nil
	}
	return int(r), nil
}
