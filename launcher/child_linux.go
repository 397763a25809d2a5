package launcher

import "syscall"

// setParentDeathSignal makes the kernel SIGKILL the child when setup dies.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
