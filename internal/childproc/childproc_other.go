//go:build !linux

package childproc

import "syscall"

// Setup is Linux-only; these keep the package building where explain runs.

func setParentDeathSignal(a *syscall.SysProcAttr) {}

func waitExitedNoReap(pid int) error { return nil }

func becomeSubreaper() error { return nil }

func killOrphans() {}
