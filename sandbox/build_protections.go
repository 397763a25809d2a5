package sandbox

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

func protection(ok bool, name, enforced, degraded string) Protection {
	if ok {
		return Protection{Name: name, Status: StatusEnforced, Detail: enforced}
	}
	return Protection{Name: name, Status: StatusDegraded, Detail: degraded}
}

func buildProtections(in Input, abi, ptraceScope int) []Protection {
	ports := []string{strconv.Itoa(in.ListenPort), "0 (ephemeral)"}
	bind := slices.Clone(in.BindPorts)
	slices.Sort(bind)
	for _, p := range slices.Compact(bind) {
		ports = append(ports, strconv.Itoa(p))
	}
	return []Protection{
		protection(abi >= MinLandlockABI, "filesystem allow-list",
			fmt.Sprintf("Landlock ABI %d: read-write, read-only and exec paths only; /tmp is not granted", abi),
			fmt.Sprintf("Landlock ABI %d is below the minimum %d: Run refuses to start", abi, MinLandlockABI)),
		protection(abi >= 3, "truncate outside read-write paths",
			"Landlock handles truncate (ABI ≥ 3)",
			"not restricted below Landlock ABI 3"),
		protection(abi >= 4, "TCP bind",
			"only ports "+strings.Join(ports, ", ")+" (Landlock ABI ≥ 4; Multipath TCP, which Landlock does not cover, is denied by seccomp)",
			fmt.Sprintf("any port can be bound: Landlock ABI %d < 4", abi)),
		protection(abi >= 5, "device ioctl",
			"ioctl on device files only on terminals (Landlock ABI ≥ 5)",
			fmt.Sprintf("ioctl on opened device files is not restricted: Landlock ABI %d < 5", abi)),
		protection(abi >= 6, "abstract unix sockets",
			"cannot connect to abstract sockets outside the sandbox (Landlock scope, ABI ≥ 6)",
			fmt.Sprintf("abstract unix sockets of the whole network namespace are reachable: Landlock ABI %d < 6", abi)),
		protection(abi >= 6, "signals",
			"cannot signal processes outside the sandbox (Landlock scope, ABI ≥ 6)",
			fmt.Sprintf("can signal any process of the same user: Landlock ABI %d < 6", abi)),
		unixProtection(abi, ptraceScope),
		protection(abi >= 9, "unix datagram sockets",
			"allowed; sends are checked by Landlock resolve_unix",
			fmt.Sprintf("socket() and socketpair() of AF_UNIX SOCK_DGRAM are denied (EACCES): their sends cannot be gated on Landlock ABI %d < 9", abi)),
		{Name: "seccomp deny-list", Status: StatusEnforced,
			Detail: "mounts, namespaces, kernel changes, ptrace and friends, bpf, keyring, io_uring, raw/packet sockets, socket families other than unix/inet/inet6/netlink, netlink other than NETLINK_ROUTE, TIOCSTI; 32-bit and x32 syscalls kill the process"},
		{Name: "set-user-ID and set-group-ID files", Status: StatusEnforced,
			Detail: "cannot be made (as systemd's RestrictSUIDSGID=): S_ISUID/S_ISGID are refused in chmod, fchmod, fchmodat(2), mknod(at), creat and O_CREAT or O_TMPFILE opens; openat2, whose mode seccomp cannot read, answers ENOSYS (libc falls back to openat)"},
		{Name: "System V IPC", Status: StatusDegraded,
			Detail: "Landlock does not cover shmget, msgget and semget: the sandbox gets an IPC namespace of its own when the launcher starts as root, and under systemd User= from PrivateIPC=; run started as the instance user outside systemd cannot make one (no CAP_SYS_ADMIN) and shares the host's segments, message queues and semaphores with a mode that lets the instance's uid in"},
		{Name: "seccomp audit log", Status: StatusEnforced,
			Detail: "log bit set: denied syscalls are audited, and so are routine clone3 fallbacks and gated connects; drop \"errno user_notif\" from kernel.seccomp.actions_logged if that is too noisy"},
		{Name: "privileges", Status: StatusEnforced,
			Detail: "runs as the instance user with its own groups only, no capabilities, no_new_privs"},
		{Name: "/proc", Status: StatusDegraded,
			Detail: "read-only /proc is granted (Bun/Node need it); other users' processes are hidden by a private /proc mounted hidepid=invisible when the launcher starts as root, and by ProtectProc=invisible under systemd User= (not when run starts as the instance user outside systemd); /proc/net/unix still lists the unix sockets of the network namespace (the host's without networkIsolation)"},
		{Name: "metadata outside the grants", Status: StatusDegraded,
			Detail: "Landlock has no right for chmod, chown, utimes or xattrs: the instance changes the metadata of files it owns anywhere; under systemd ProtectSystem=strict makes them read-only outside ReadWritePaths, run outside systemd does not (own nothing outside the instance's paths)"},
		orphanProtection(abi),
		{Name: "exec from memory", Status: StatusDegraded,
			Detail: "Landlock restricts exec by path, and a memfd has none: the instance may exec a program it wrote to a memfd; it keeps the same Landlock domain, seccomp filter and user (the read-write paths are executable anyway)"},
		{Name: "TCP connect", Status: StatusDelegated,
			Detail: "not restricted by the sandbox on purpose: outbound traffic is the network policy's job"},
	}
}

func orphanProtection(abi int) Protection {
	if abi >= 9 {
		return Protection{Name: "processes outliving the server", Status: StatusDegraded,
			Detail: "descendants that leave the server's process group survive it; under systemd the unit's cgroup kills them (KillMode=mixed), outside systemd they run on, confined (no_new_privs, Landlock, seccomp)"}
	}
	return Protection{Name: "processes outliving the supervisor", Status: StatusDegraded,
		Detail: "the server dies with the supervisor by its parent-death signal, which it may clear, and descendants that leave the process group survive it; under systemd the unit's cgroup kills them all (KillMode=mixed), outside systemd they run on, confined (no_new_privs, Landlock, seccomp; gated connects fail with ENOSYS)"}
}

func unixProtection(abi, ptraceScope int) Protection {
	if abi >= 9 {
		return Protection{Name: "unix socket allow-list", Status: StatusEnforced,
			Detail: fmt.Sprintf("enforced by Landlock resolve_unix (ABI %d ≥ 9); the launcher execs the server", abi)}
	}
	switch {
	case ptraceScope >= 3:
		return Protection{Name: "unix socket allow-list", Status: StatusDegraded,
			Detail: fmt.Sprintf("BROKEN: kernel.yama.ptrace_scope=%d forbids pidfd_getfd, which the seccomp supervisor (Landlock ABI %d < 9) needs: every unix connect fails with EACCES, allowed ones too; run refuses to start when sandbox.unixSockets.allow is set (the value cannot be lowered without a reboot)", ptraceScope, abi)}
	case ptraceScope == 2:
		return Protection{Name: "unix socket allow-list", Status: StatusDegraded,
			Detail: fmt.Sprintf("kernel.yama.ptrace_scope=2: the seccomp supervisor (Landlock ABI %d < 9) needs CAP_SYS_PTRACE for pidfd_getfd, so it works when run starts as root but not as the instance user (systemd User=), where every unix connect fails with EACCES; run refuses to start then when sandbox.unixSockets.allow is set; set the sysctl to 1 or lower", abi)}
	}
	return Protection{Name: "unix socket allow-list", Status: StatusEnforced,
		Detail: fmt.Sprintf("enforced by seccomp supervisor (Landlock ABI %d < 9): the launcher stays resident and connects on the caller's behalf, so servers see the supervisor's pid in SO_PEERCRED", abi)}
}

// bindProtections covers what Landlock's TCP bind rule leaves open in a
// shared network namespace: abstract unix names that host clients connect
// to, and UDP ports.
func bindProtections(in Input, abi int) []Protection {
	if !in.SharedNetwork {
		return []Protection{
			{Name: "abstract unix socket bind", Status: StatusDelegated,
				Detail: "the instance has its own network namespace, whose abstract names no host client sees"},
			{Name: "UDP bind", Status: StatusDelegated,
				Detail: "the instance has its own network namespace; its input filter drops what the host did not ask for"},
		}
	}
	if abi >= 9 {
		return []Protection{
			{Name: "abstract unix socket bind", Status: StatusDegraded,
				Detail: fmt.Sprintf("not restricted: Landlock ABI %d has no supervisor to gate bind(2), and Landlock scopes only connects; enable networkIsolation", abi)},
			{Name: "UDP bind", Status: StatusDegraded,
				Detail: fmt.Sprintf("any free UDP port can be bound: Landlock ABI %d restricts TCP only and no supervisor runs; enable networkIsolation", abi)},
		}
	}
	return []Protection{
		{Name: "abstract unix socket bind", Status: StatusEnforced,
			Detail: "denied (EACCES), autobind too: the seccomp supervisor binds on the caller's behalf and refuses abstract names in the host's network namespace; socket files only in the read-write paths"},
		{Name: "UDP bind", Status: StatusEnforced,
			Detail: "only ports 0 (ephemeral), listen.port and sandbox.allowBindPorts, as for TCP: the seccomp supervisor binds on the caller's behalf"},
	}
}
