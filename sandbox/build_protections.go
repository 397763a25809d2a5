package sandbox

import "fmt"

// buildProtections lists the promises that do not rest on Landlock
// alone (those come from downgrade): how the unix-socket allow-list is
// enforced follows the gate the plan chose, and the rest holds on every
// kernel ocnix runs on.
//
// pidns: run makes the sandbox a PID namespace (as root); unitNS: the
// launcher already runs in one under its own init (PrivatePIDs=).
func buildProtections(l LandlockPlan, gate GatePlan, ptraceScope int, pidns, unitNS bool) []Protection {
	prots := []Protection{
		unixProtection(l, gate, ptraceScope),
		{Name: "seccomp deny-list", Status: StatusEnforced,
			Detail: "mounts, namespaces, kernel changes, ptrace and friends, bpf, keyring, io_uring, TIOCSTI; 32-bit and x32 syscalls kill the process"},
		{Name: "socket creation", Status: StatusEnforced,
			Detail: "an allow-list: socket() and socketpair() only of the listed family, type and protocol (unix stream/seqpacket, TCP, UDP, netlink route); every other family, type, flag bit and protocol is refused, including ones no kernel has yet"},
		{Name: "set-user-ID and set-group-ID files", Status: StatusEnforced,
			Detail: "cannot be made (as systemd's RestrictSUIDSGID=): S_ISUID/S_ISGID are refused in chmod, fchmod, fchmodat(2), mknod(at), creat and O_CREAT or O_TMPFILE opens; openat2, whose mode seccomp cannot read, answers ENOSYS (libc falls back to openat)"},
		{Name: "System V IPC", Status: StatusDegraded,
			Detail: "Landlock does not cover shmget, msgget and semget: the sandbox gets an IPC namespace of its own when the launcher starts as root, and under systemd User= from PrivateIPC=; run started as the instance user outside systemd cannot make one (no CAP_SYS_ADMIN) and shares the host's segments, message queues and semaphores with a mode that lets the instance's uid in"},
		{Name: "seccomp audit log", Status: StatusEnforced,
			Detail: "log bit set on the filters that deny: denied syscalls are audited per kernel.seccomp.actions_logged; routine actions (gated connects and binds, the clone3, openat2 and io_uring ENOSYS fallbacks) live in a filter without it and are not"},
		{Name: "privileges", Status: StatusEnforced,
			Detail: "runs as the instance user with its own groups only, no capabilities, no_new_privs"},
		procProtection(pidns, unitNS),
		{Name: "metadata outside the grants", Status: StatusDegraded,
			Detail: "Landlock has no right for chmod, chown, utimes or xattrs: the instance changes the metadata of files it owns anywhere; under systemd ProtectSystem=strict makes them read-only outside ReadWritePaths, run outside systemd does not (own nothing outside the instance's paths)"},
	}
	prots = append(prots, processProtections(gate, pidns, unitNS)...)
	return append(prots, []Protection{
		{Name: "exec from memory", Status: StatusDegraded,
			Detail: "Landlock restricts exec by path, and a memfd has none: the instance may exec a program it wrote to a memfd; it keeps the same Landlock domain, seccomp filter and user (the read-write paths are executable anyway)"},
		{Name: "TCP connect", Status: StatusDelegated,
			Detail: "not restricted by the sandbox on purpose: outbound traffic is the network policy's job"},
	}...)
}

// processProtections: what keeps the sandbox's processes apart from the
// host's (kill, prlimit, setpriority, sched_setaffinity, ioprio_set check
// only the uid) and what ends them with the server.
func processProtections(gate GatePlan, pidns, unitNS bool) []Protection {
	if unitNS && !pidns {
		return []Protection{
			{Name: "pid namespace", Status: StatusEnforced,
				Detail: "the launcher runs in a PID namespace of its unit's (systemd PrivatePIDs=, which the NixOS module sets on systemd ≥ 257) whose pid 1 is the launcher's own init, which only reaps and forwards signals: no process outside can be signalled, re-limited (prlimit), rescheduled (setpriority, sched_*, ioprio_set), traced or found by pid; inside, the init and the supervisor have the instance's uid, so the server can re-limit them, which can only end its own instance (both are non-dumpable; from Landlock ABI 6 signals to them are refused: the server's domain is nested in the supervisor thread's and scopes signals)"},
			{Name: "processes outliving the server", Status: StatusEnforced,
				Detail: "none: when run exits the init exits, and the kernel kills everything left in the namespace, background jobs in sessions of their own too; meanwhile the init reaps the orphans, so their zombies hold no pids"},
		}
	}
	if pidns {
		return []Protection{
			{Name: "pid namespace", Status: StatusEnforced,
				Detail: "the sandbox has a PID namespace of its own whose init is a root-owned guard that only reaps (it runs nothing of the sandbox; the server can neither signal, trace nor see it): no process outside can be signalled, re-limited (prlimit), rescheduled (setpriority, sched_*, ioprio_set), traced or found by pid"},
			{Name: "processes outliving the server", Status: StatusEnforced,
				Detail: "none: when the server exits the supervisor kills the guard and the kernel kills everything left in the namespace, background jobs in sessions of their own (setsid, nohup, opencode's shell commands) too; the guard dies with the supervisor (parent-death signal, armed by root and checked), and the namespace with it"},
		}
	}
	if gate.Mode == GateLandlock {
		return []Protection{
			{Name: "pid namespace", Status: StatusDegraded,
				Detail: "none: on Landlock ABI ≥ 9 the launcher execs the server in the PID namespace it was started in (no supervisor to hold a guard), so same-uid processes of the host can be signalled, re-limited (prlimit), rescheduled and found by pid; under systemd ≥ 257 the NixOS module sets the unit's PrivatePIDs=, and run there says enforced"},
			{Name: "processes outliving the server", Status: StatusDegraded,
				Detail: "descendants that leave the server's process group survive it; under systemd the unit's cgroup kills them (KillMode=mixed), outside systemd they run on, confined (no_new_privs, Landlock, seccomp)"},
		}
	}
	return []Protection{
		{Name: "pid namespace", Status: StatusDegraded,
			Detail: "none: run does not start as root and cannot make one, so same-uid processes of the host can be signalled, re-limited (prlimit), rescheduled and found by pid; under systemd ≥ 257 the NixOS module sets the unit's PrivatePIDs= (run there says enforced), and run as root outside systemd makes one itself"},
		{Name: "processes outliving the supervisor", Status: StatusDegraded,
			Detail: "the server dies with the supervisor by its parent-death signal, which it may clear, and descendants that leave the process group survive it; under systemd the unit's cgroup kills them all (KillMode=mixed), outside systemd they run on, confined (no_new_privs, Landlock, seccomp; gated connects fail with ENOSYS)"},
	}
}

// procProtection: as root, /proc is the sandbox's PID namespace's own,
// mounted by its guard; otherwise whatever the caller's mount namespace
// holds (the launcher's private hidepid=invisible mount, or systemd's).
func procProtection(pidns, unitNS bool) Protection {
	if unitNS && !pidns {
		return Protection{Name: "/proc", Status: StatusEnforced,
			Detail: "read-only /proc is granted (Bun/Node need it); it is the unit's PID namespace's own (PrivatePIDs= mounts it, ProtectProc=invisible): it lists only the launcher's init, the supervisor and the sandbox's processes, nothing of the host; /proc/net/unix still lists the unix sockets of the network namespace (the host's without networkIsolation)"}
	}
	if pidns {
		return Protection{Name: "/proc", Status: StatusEnforced,
			Detail: "read-only /proc is granted (Bun/Node need it); it is the sandbox's PID namespace's own, mounted hidepid=invisible by the namespace's guard in a mount namespace of the sandbox's: it lists only the sandbox's processes by the pids they have inside (ps, pgrep, pkill and /proc/self work; the root-owned guard, pid 1, is hidden), nothing of the host; /proc/net/unix still lists the unix sockets of the network namespace (the host's without networkIsolation)"}
	}
	return Protection{Name: "/proc", Status: StatusDegraded,
		Detail: "read-only /proc is granted (Bun/Node need it); other users' processes are hidden by a private /proc mounted hidepid=invisible when the launcher starts as root, and by ProtectProc=invisible under systemd User= (not when run starts as the instance user outside systemd); /proc/net/unix still lists the unix sockets of the network namespace (the host's without networkIsolation)"}
}

func unixProtection(l LandlockPlan, gate GatePlan, ptraceScope int) Protection {
	if gate.Mode == GateLandlock {
		return Protection{Name: "unix socket allow-list", Status: StatusEnforced,
			Detail: fmt.Sprintf("enforced by Landlock resolve_unix (ABI %d ≥ %d); the launcher execs the server", l.ABI, resolveUnixSince)}
	}
	switch {
	case ptraceScope >= 3:
		return Protection{Name: "unix socket allow-list", Status: StatusDegraded,
			Detail: fmt.Sprintf("BROKEN: kernel.yama.ptrace_scope=%d forbids pidfd_getfd, which the seccomp supervisor (Landlock ABI %d < %d) needs: every unix connect fails with EACCES, allowed ones too; run refuses to start when sandbox.unixSockets.allow is set (the value cannot be lowered without a reboot)", ptraceScope, l.ABI, resolveUnixSince)}
	case ptraceScope == 2:
		return Protection{Name: "unix socket allow-list", Status: StatusDegraded,
			Detail: fmt.Sprintf("kernel.yama.ptrace_scope=2: the seccomp supervisor (Landlock ABI %d < %d) needs CAP_SYS_PTRACE for pidfd_getfd, so it works when run starts as root but not as the instance user (systemd User=), where every unix connect fails with EACCES; run refuses to start then when sandbox.unixSockets.allow is set; set the sysctl to 1 or lower", l.ABI, resolveUnixSince)}
	}
	return Protection{Name: "unix socket allow-list", Status: StatusEnforced,
		Detail: fmt.Sprintf("enforced by seccomp supervisor (Landlock ABI %d < %d): the launcher stays resident and connects on the caller's behalf, so servers see the supervisor's pid in SO_PEERCRED", l.ABI, resolveUnixSince)}
}

// bindProtections covers what Landlock's TCP bind rule leaves open in a
// shared network namespace: abstract unix names that host clients connect
// to, and UDP ports.
func bindProtections(in Input, l LandlockPlan, gate GatePlan) []Protection {
	if !in.SharedNetwork {
		return []Protection{
			{Name: "abstract unix socket bind", Status: StatusDelegated,
				Detail: "the instance has its own network namespace, whose abstract names no host client sees"},
			{Name: "UDP bind", Status: StatusDelegated,
				Detail: "the instance has its own network namespace; its input filter drops what the host did not ask for"},
		}
	}
	if gate.Bind == nil {
		return []Protection{
			{Name: "abstract unix socket bind", Status: StatusDegraded,
				Detail: fmt.Sprintf("not restricted: Landlock ABI %d has no supervisor to gate bind(2), and Landlock scopes only connects; enable networkIsolation", l.ABI)},
			{Name: "UDP bind", Status: StatusDegraded,
				Detail: fmt.Sprintf("any free UDP port can be bound: Landlock ABI %d restricts TCP only and no supervisor runs; enable networkIsolation", l.ABI)},
		}
	}
	return []Protection{
		{Name: "abstract unix socket bind", Status: StatusEnforced,
			Detail: "denied (EACCES), autobind too: the seccomp supervisor binds on the caller's behalf and refuses abstract names in the host's network namespace; socket files only in the read-write paths"},
		{Name: "UDP bind", Status: StatusEnforced,
			Detail: "only ports 0 (ephemeral), listen.port and sandbox.allowBindPorts, as for TCP: the seccomp supervisor binds on the caller's behalf"},
	}
}
