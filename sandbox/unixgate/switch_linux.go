package unixgate

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errRestore means a thread could not take back the supervisor's credentials. That
// thread must never run another goroutine: its owner returns without UnlockOSThread, so
// the Go runtime terminates the thread.
var errRestore = errors.New("restore supervisor credentials")

// unchanged is passed for ids that setres[ug]id must leave alone.
const unchanged = ^uintptr(0)

// asCaller runs fn on the current, locked OS thread with the effective uid, gid, groups
// and effective capabilities of c, then restores self's. The syscalls are raw on purpose:
// glibc and Go's syscall.Setresuid apply to every thread, these apply to this one only.
// It returns errRestore (wrapped) if the thread is left in the wrong state.
func asCaller(self *selfCreds, c creds, fn func()) error {
	var ch changed
	err := enter(self, c, &ch)
	if err == nil {
		fn()
	}
	if rerr := leave(self, ch); rerr != nil {
		return fmt.Errorf("%w: %w", errRestore, rerr)
	}
	if err != nil {
		return fmt.Errorf("take credentials %v: %w", c, err)
	}
	return nil
}

// changed records what enter switched, so leave undoes exactly that (each syscall costs
// a credential copy in the kernel).
type changed struct{ groups, gid, uid, caps bool }

func enter(self *selfCreds, c creds, ch *changed) error {
	// Groups and gid first: changing them needs CAP_SETGID, which the uid change drops.
	if !slices.Equal(c.groups, self.groups) {
		ch.groups = true
		if err := setgroups(c.groups); err != nil {
			return err
		}
	}
	if c.gid != self.gid {
		ch.gid = true
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, uintptr(c.gid), unchanged); e != 0 {
			return fmt.Errorf("setresgid: %w", e)
		}
	}
	if c.uid != self.uid {
		// Real and saved uid stay ours, so leave may switch back. Leaving uid 0 empties
		// the effective capability set, which is what a non-root caller has too.
		ch.uid = true
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, uintptr(c.uid), unchanged); e != 0 {
			return fmt.Errorf("setresuid: %w", e)
		}
	}
	// A root caller without capabilities must not borrow ours (CAP_DAC_OVERRIDE would open
	// a 0600 socket for it).
	want := [2]uint32{c.capEff[0] & self.capPrm[0], c.capEff[1] & self.capPrm[1]}
	if c.uid == 0 && want != self.capEff {
		ch.caps = true
		return capset(want, self.capPrm, self.capInh)
	}
	return nil
}

// leave undoes enter on this thread, uid first so that the rest is permitted again.
func leave(self *selfCreds, ch changed) error {
	if ch.uid {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, uintptr(self.uid), unchanged); e != 0 {
			return fmt.Errorf("setresuid: %w", e)
		}
	}
	// Returning to uid 0 copies the permitted set to the effective set; put back
	// exactly the effective set the supervisor had.
	if ch.caps || (ch.uid && self.uid == 0 && self.capEff != self.capPrm) {
		if err := capset(self.capEff, self.capPrm, self.capInh); err != nil {
			return err
		}
	}
	if ch.gid {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, uintptr(self.gid), unchanged); e != 0 {
			return fmt.Errorf("setresgid: %w", e)
		}
	}
	if ch.groups {
		return setgroups(self.groups)
	}
	return nil
}

func setgroups(gs []uint32) error {
	var p unsafe.Pointer
	if len(gs) > 0 {
		p = unsafe.Pointer(&gs[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gs)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
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
