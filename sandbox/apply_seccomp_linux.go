package sandbox

import (
	"fmt"

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

// newFilter builds the libseccomp filter for s without loading it.
// The caller must Release it.
func newFilter(s SeccompPlan) (*seccomp.ScmpFilter, error) {
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
	if s.Log {
		if err := f.SetLogBit(true); err != nil {
			return nil, fmt.Errorf("sandbox: seccomp: set log bit: %w", err)
		}
	}
	for _, r := range s.Rules {
		nr, err := syscallNumber(r.Syscall)
		if err != nil {
			return nil, err
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

// loadSeccomp loads the filter on all threads (libseccomp sets TSYNC).
// It returns the user-notification fd when the plan notifies, else -1.
func loadSeccomp(s SeccompPlan) (int, error) {
	f, err := newFilter(s)
	if err != nil {
		return -1, err
	}
	defer f.Release()
	if err := f.Load(); err != nil {
		return -1, fmt.Errorf("sandbox: seccomp: load filter: %w", err)
	}
	for _, r := range s.Rules {
		if r.Action == ActionNotify {
			fd, err := f.GetNotifFd()
			if err != nil {
				return -1, fmt.Errorf("sandbox: seccomp: get notify fd: %w", err)
			}
			return int(fd), nil
		}
	}
	return -1, nil
}
