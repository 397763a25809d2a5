//go:build !linux

package launcher

import "syscall"

// setParentDeathSignal is Linux-only; setup itself is Linux-only too, this
// keeps the package building where explain runs.
func setParentDeathSignal(a *syscall.SysProcAttr) {}
