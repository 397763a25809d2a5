// Package sandbox confines an opencode server with Landlock, seccomp and
// a privilege drop, and enforces its unix-socket allow-list.
//
// The package follows plan → apply. [Build] is pure: from an [Input]
// (the instance spec's sandbox keys) and [Caps] (facts about this
// kernel and host, from [DetectCaps]) it computes a [Plan], plain data
// with JSON tags and a String method that `opencode-launcher explain`
// prints. [Run] applies exactly that plan (its Landlock rules travel to
// the re-executed child as JSON, its seccomp rules as the BPF program
// libseccomp compiles from them), so what explain shows is what is
// enforced.
//
// # Invariants
//
//   - Deny by default. Landlock handles every filesystem right the
//     kernel knows; only the rules in the plan allow anything. /tmp is
//     never granted: TMPDIR is a private directory beneath stateDir.
//   - /dev/shm is not granted either: like /tmp it is shared by every
//     user of the host. Python's multiprocessing locks (sem_open) and
//     Chromium need it; where the instance has a private /dev/shm (a
//     mount namespace of its own, e.g. systemd PrivateDevices=, which
//     mounts a fresh /dev), add /dev/shm to readWritePaths.
//   - Rights only add up in Landlock, so Build rejects a read-only path
//     beneath a read-write path instead of pretending it is read-only.
//     No rule may be "/".
//   - Rules are added by file descriptor (O_PATH), so a path is resolved
//     once. A path strictly beneath one of the instance's own read-write
//     directories must not go through a symlink below that directory
//     (RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH): the instance could point it
//     anywhere between two starts, and the rule is added as root. Paths
//     elsewhere may go through symlinks only root can change (NixOS
//     /run/current-system/sw, /etc).
//   - Nothing degrades silently. Each protection in [Plan.Protections]
//     is "enforced", "DEGRADED" (this kernel cannot do it) or
//     "delegated" (another layer owns it).
//   - The server never runs as root, keeps no capabilities (ambient
//     ones included) and has no_new_privs. Users and groups are
//     resolved before any fork: NSS may connect to nscd or sssd, which
//     must not happen once connect(2) is gated.
//   - Fail closed. If the supervisor dies, the server gets SIGKILL
//     (PR_SET_PDEATHSIG) and pending connects fail with ENOSYS; if the
//     gate stops serving, the server is killed.
//
// # Minimum Landlock ABI
//
// [MinLandlockABI] is 3 (Linux 6.2). ABI 1 cannot allow renames
// between directories at all, and ABI 2 leaves truncate(2) unrestricted,
// so files outside the read-write paths could be emptied. Below ABI 3
// Build returns [ErrLandlockTooOld] (with the plan, for explain) and Run
// refuses to start. ABI 1 never silently enforces nothing.
//
// What newer ABIs add, and what the plan says when they are missing:
//
//	ABI 4  TCP bind only to listen.port, sandbox.allowBindPorts and port 0
//	       (ephemeral, for test servers); TCP connect is left to the network policy
//	ABI 5  ioctl on device files (granted on terminals only)
//	ABI 6  scoping: no abstract unix sockets or signals outside the sandbox
//	ABI 9  LANDLOCK_ACCESS_FS_RESOLVE_UNIX: the unix-socket allow-list in
//	       the kernel, no supervisor
//
// # Missing paths
//
// Decided per kind, and visible in explain ("MISSING"):
//
//   - directory, stateDir, readWritePaths, readOnlyPaths and path
//     entries (ExecPaths) are required: Run fails with an error naming
//     the path. systemd also fails a unit whose ReadOnlyPaths= are
//     missing, and a silently skipped read-only path would hide a typo.
//     Build does not fail (explain and check must work on a machine
//     without them); it marks the rule Missing.
//   - the system baseline, device nodes and /proc, /sys views are
//     optional: skipped when absent on this host (a container may lack
//     /lib64 or /dev/tty). /proc is whatever the caller's mount
//     namespace holds: the launcher, as root, mounts a private one with
//     hidepid=invisible first (systemd's ProtectProc=invisible under
//     User=), so other users' processes are not listed.
//   - unix-socket allow-list entries are checked per connect by the
//     supervisor, so a socket may appear later. On ABI ≥ 9 a rule needs
//     the inode, so a missing socket file is skipped; allow its
//     directory to cover a server that starts after the instance.
//
// # Unix sockets below ABI 9
//
// Landlock cannot see connect(2) before ABI 9. There seccomp sends every
// connect to the supervisor with user notification, and package
// unixgate decides and connects on the caller's behalf (it never answers
// CONTINUE). Two consequences, both named in explain:
//
// WARNING: unix datagram sockets are denied below ABI 9. socket(2) and
// socketpair(2) of AF_UNIX SOCK_DGRAM fail with EACCES (the type is
// matched with SOCK_NONBLOCK and SOCK_CLOEXEC masked off). An unconnected
// datagram send carries its address inside sendmsg's msghdr, which
// seccomp cannot read, so it cannot be gated. socketpair is denied too,
// because a datagram socketpair end can sendto(2) any unbound-peer
// datagram socket on the host (measured here). Stream and seqpacket
// socketpairs work. syslog(3) to /dev/log and sd_notify fail.
//
// WARNING: servers reached through the gate see the supervisor's pid in
// SO_PEERCRED (the uid, gid and groups are the caller's).
//
// With Input.SharedNetwork (no network namespace of its own) the filter
// also notifies bind(2), and the supervisor binds on the caller's behalf:
// no abstract unix names (host clients look them up: X11, D-Bus-like
// names), socket files only in the read-write paths, TCP and UDP ports
// only 0, the listen port and BindPorts. Landlock does not confine the
// supervisor, so these rules restate Landlock's for the binds it does.
// On ABI ≥ 9 nothing gates them: explain says DEGRADED.
//
// pidfd_getfd needs ptrace access to the caller: Yama's ptrace_scope 1
// allows it to the supervisor (an ancestor), 2 only with CAP_SYS_PTRACE
// (run as root, not systemd User=), 3 never. Caps.PtraceScope makes the
// plan say so, and Run refuses a plan with an allow-list the gate cannot
// serve (ErrGateUnavailable).
//
// Not allowed unless listed, on every ABI: nscd (/run/nscd/socket, which
// glibc tries before reading /etc/passwd itself; the gate logs that denial
// at debug only, since it happens on every user lookup and glibc falls
// back), D-Bus, the systemd journal and notify sockets, and the Docker
// socket. Name services (nscd, systemd-resolved's varlink socket, the
// D-Bus system bus, avahi) resolve with the host's network: for an
// isolated instance, `check` and `explain` warn when the allow-list
// reaches one.
//
// # Seccomp
//
// A deny-list (default allow), with the errno each call needs: mounts
// and namespaces, clone with CLONE_NEW* flags (EPERM), clone3 (ENOSYS,
// so glibc falls back to clone, whose flags seccomp can read), kernel
// and host changes, ptrace and other ways into other processes, bpf,
// the keyring, io_uring (ENOSYS: it bypasses seccomp and the gate),
// socket families other than unix, inet, inet6 and netlink
// (EAFNOSUPPORT), raw and packet sockets, netlink protocols other than
// NETLINK_ROUTE, Multipath TCP (EPROTONOSUPPORT: Landlock's TCP bind
// rule does not cover it, and Go listens with MPTCP by default), TIOCSTI
// and TIOCLINUX, personality flags that turn off ASLR or make memory
// executable, and set-user/group-ID modes in chmod and creating opens
// (EPERM). Integer arguments are compared on their low 32 bits, as the
// kernel reads them. Syscalls of other ABIs (32-bit int 0x80, x32) kill
// the process, so socketcall and friends are no bypass. The log bit
// (SECCOMP_FILTER_FLAG_LOG) is set where libseccomp supports it.
//
// WARNING: with the log bit, routine events are audited too: glibc's
// clone3 attempt before every thread or posix_spawn (ENOSYS, then clone)
// and every gated connect (a user notification). Most records are those,
// and the kernel's rate limit may drop real denials. Operators can drop
// "errno user_notif" from the kernel.seccomp.actions_logged sysctl.
//
// Nothing restricts W^X: Bun and Node JIT keep working.
//
// # Child order
//
// Below ABI 9, [Run] re-executes /proc/self/exe with a marker in the
// environment; [ChildMain] (first thing in main) recognises it and, on
// its locked main thread:
//
//  1. reads the plan from fd 3 and checks its parent is the supervisor;
//  2. applies Landlock;
//  3. loads seccomp: a BPF program the supervisor compiled with
//     libseccomp while the child started, installed with seccomp(2);
//  4. sends the notify fd to the supervisor over fd 4 (SCM_RIGHTS).
//     Nothing that can connect(2) may run between 3 and 4;
//  5. drops to the instance user (setgroups, setresgid, setresuid) and
//     clears all capabilities, then verifies the result;
//  6. arms PR_SET_PDEATHSIG(SIGKILL) (setresuid cleared it) and checks
//     getppid again;
//  7. marks every fd from 3 up close-on-exec and execs the target.
//
// Steps 2, 3 and 5 act on the calling thread only, on purpose: execve
// gives the new program the Landlock domain, seccomp filters and
// credentials of the thread that calls it, and kills every other
// thread, which until then only run the launcher's own Go runtime.
// This avoids signalling every thread (psx, glibc setxid), which cost
// about 10 ms per start.
//
// Any failure exits 126 and sends the reason to the supervisor, which
// returns it from Run; the target never runs half-confined.
//
// Start-up costs about 8–9 ms more than a bare fork and exec on the CI
// machine (BenchmarkStartupSandboxed vs BenchmarkStartupBare), most of
// it the re-exec of a cgo Go binary (about 2.5 ms) and its fork.
//
// The supervisor forks from the calling goroutine's locked OS thread,
// so the child inherits a network namespace joined on that thread and
// PR_SET_PDEATHSIG is tied to a thread that lives as long as Run (the
// package locks the main goroutine to the main thread in init). The
// child gets its own session and process group: a terminal's SIGINT
// reaches only the supervisor, which forwards SIGTERM, SIGINT and
// SIGHUP once. When the child exits, its process group is killed.
//
// WARNING: descendants that leave the process group (setsid) survive
// the supervisor; their connects then fail (ENOSYS). Under systemd,
// KillMode=control-group (the default) ends them with the unit.
//
// On ABI ≥ 9 there is no supervisor: Run confines the calling process
// in the same order (without steps 4 and 6) and execs the target.
//
// # Example
//
//	caps := sandbox.DetectCaps()
//	plan, err := sandbox.Build(in, caps)
//	if err != nil { … }
//	fmt.Print(plan) // explain
//	code, err := sandbox.Run(ctx, plan, sandbox.Command{Path: bin, Args: argv, Env: env, Dir: in.Directory}, log)
package sandbox
