package unixgate

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ocnix/ocnix/internal/threadcred"
	"golang.org/x/sys/unix"
)

// errTainted means a credential switch failed half-way: the thread's identity is unknown,
// so its goroutine must end while still locked, and the runtime then retires the thread.
var errTainted = errors.New("thread credentials in an unknown state")

// secbitNoSetuidFixup keeps capabilities across uid changes (SECBIT_NO_SETUID_FIXUP).
const secbitNoSetuidFixup = 1 << 2

// supervisorCaps are what a thread acting as a caller still needs for the next
// notification: CAP_SYS_PTRACE for pidfd_getfd, process_vm_readv and /proc/<tid>/root of a
// task with another real uid, CAP_SETUID and CAP_SETGID to take the next caller's
// identity. None of them bypasses a file-permission check or matters to connect(2), and
// the magic links CAP_SYS_PTRACE would open in /proc are refused by RESOLVE_NO_MAGICLINKS.
const supervisorCaps = 1<<unix.CAP_SYS_PTRACE | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID

// threadIdentity is the identity of one locked OS thread.
//
// Switching credentials costs a copy of the kernel's cred per syscall (about 8 µs for a
// setresuid pair on the reference VM), so a thread does not switch back after a connect:
// it keeps acting as the last caller, whose connects usually come next. Its real and saved
// uid stay the supervisor's, so the caller can neither signal nor ptrace it. Before the
// thread goes back to the Go scheduler, restore makes it the supervisor again; if that
// fails, its goroutine ends while locked and the runtime retires the thread.
//
// Retiring a thread has a cost beyond the thread: if it is the thread that forked the
// sandboxed child, PR_SET_PDEATHSIG kills the child. Callers fork from a thread that
// stays locked for the child's life (see the package documentation).
type threadIdentity struct {
	self     *selfCreds
	cur      creds
	curCaps  [2]uint32
	prepared bool // securebits set: uid changes keep capabilities
	origBits uintptr
}

func newThreadIdentity(self *selfCreds) *threadIdentity {
	return &threadIdentity{self: self, cur: self.creds, curCaps: self.capEff}
}

// become makes the current, locked thread act as c: effective uid and gid (the fs ids
// follow), supplementary groups, and effective capabilities c.capEff plus supervisorCaps,
// both limited to what the supervisor has. The syscalls are raw and apply to this thread
// only; glibc and Go's syscall.Setresuid would change every thread. An error wrapping
// errTainted means the thread must be retired; other errors left it unchanged.
func (ti *threadIdentity) become(c creds) error {
	prm := ti.self.capPrm
	want := [2]uint32{(c.capEff[0] | supervisorCaps) & prm[0], c.capEff[1] & prm[1]}
	if c.uid == ti.self.uid && c.gid == ti.self.gid && slices.Equal(c.groups, ti.self.groups) &&
		c.capEff == ti.self.capEff {
		want = ti.self.capEff // the supervisor itself, exactly
	}
	if c.uid == ti.cur.uid && c.gid == ti.cur.gid && slices.Equal(c.groups, ti.cur.groups) && want == ti.curCaps {
		return nil
	}
	if !ti.prepared {
		bits, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_GET_SECUREBITS, 0, 0)
		if e == 0 {
			_, _, e = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, bits|secbitNoSetuidFixup, 0)
		}
		if e != 0 {
			return fmt.Errorf("set securebits: %w", e) // nothing changed yet
		}
		ti.prepared, ti.origBits = true, bits
	}
	// The id changes need CAP_SETUID and CAP_SETGID, which every set this thread holds
	// includes unless the supervisor lacks them (then the kernel refuses with EPERM).
	const setid = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	if ti.curCaps[0]&setid != setid && prm[0]&setid == setid {
		if err := capset(prm, prm, ti.self.capInh); err != nil {
			return fmt.Errorf("%w: %w", errTainted, err)
		}
		ti.curCaps = prm
	}
	if !slices.Equal(c.groups, ti.cur.groups) {
		gids := make([]int, len(c.groups))
		for i, g := range c.groups {
			gids[i] = int(g)
		}
		if err := threadcred.Setgroups(gids); err != nil {
			return fmt.Errorf("%w: %w", errTainted, err)
		}
	}
	if c.gid != ti.cur.gid {
		if err := threadcred.Setresgid(threadcred.Keep, int(c.gid), threadcred.Keep); err != nil {
			return fmt.Errorf("%w: %w", errTainted, err)
		}
	}
	if c.uid != ti.cur.uid {
		// Real and saved uid stay the supervisor's.
		if err := threadcred.Setresuid(threadcred.Keep, int(c.uid), threadcred.Keep); err != nil {
			return fmt.Errorf("%w: %w", errTainted, err)
		}
	}
	// With SECBIT_NO_SETUID_FIXUP nothing above touched the capabilities; set them now.
	if want != ti.curCaps {
		if err := capset(want, prm, ti.self.capInh); err != nil {
			return fmt.Errorf("%w: %w", errTainted, err)
		}
	}
	ti.cur, ti.curCaps = c, want
	return nil
}

// restore makes the thread the supervisor again, securebits included, so that it may
// return to the Go scheduler with runtime.UnlockOSThread. After an error it must not.
func (ti *threadIdentity) restore() error {
	if !ti.prepared {
		return nil // never switched
	}
	if err := ti.become(ti.self.creds); err != nil {
		return err
	}
	if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, ti.origBits, 0); e != 0 {
		return fmt.Errorf("%w: restore securebits: %w", errTainted, e)
	}
	ti.prepared = false
	return nil
}

func capset(eff, prm, inh [2]uint32) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: eff[0], Permitted: prm[0], Inheritable: inh[0]},
		{Effective: eff[1], Permitted: prm[1], Inheritable: inh[1]},
	}
	// unix.Capset is a plain per-thread syscall, as wanted here.
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
