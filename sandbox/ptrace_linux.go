package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// gateUsable says whether the supervisor may pidfd_getfd from its
// children. pidfd_getfd asks for PTRACE_MODE_ATTACH_REALCREDS: Yama's
// ptrace_scope 1 allows it to an ancestor (the supervisor is one), 2 only
// with CAP_SYS_PTRACE, 3 never.
func gateUsable(ptraceScope int, capSysPtrace bool) error {
	switch {
	case ptraceScope >= 3:
		return fmt.Errorf("kernel.yama.ptrace_scope=%d forbids the pidfd_getfd that the unix-socket gate needs below Landlock ABI 9 (it cannot be lowered without a reboot): %w", ptraceScope, ErrGateUnavailable)
	case ptraceScope == 2 && !capSysPtrace:
		return fmt.Errorf("kernel.yama.ptrace_scope=2 lets only CAP_SYS_PTRACE use pidfd_getfd, which the unix-socket gate needs below Landlock ABI 9, and the launcher runs without it (systemd User=); set kernel.yama.ptrace_scope=1 or start run as root: %w", ErrGateUnavailable)
	}
	return nil
}

// hasCapSysPtrace reports whether CAP_SYS_PTRACE is effective.
func hasCapSysPtrace() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_PTRACE/32].Effective&(1<<(unix.CAP_SYS_PTRACE%32)) != 0
}
