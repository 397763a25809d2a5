// Package sandbox confines an opencode server with Landlock, seccomp and
// a privilege drop, and enforces its unix-socket allow-list.
//
// The package follows plan → apply. [Build] is pure: from an [Input]
// (the instance spec's sandbox keys) and [Caps] (facts about this
// kernel and host, from [DetectCaps]) it computes a [Plan], plain data
// with JSON tags and a String method that `opencode-launcher explain`
// prints. [Run] applies exactly that plan (its Landlock rules as given,
// its seccomp rules as the BPF program libseccomp compiles from them),
// so what explain shows is what is enforced.
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
//	ABI 7  audit of denials after execve
//	ABI 9  LANDLOCK_ACCESS_FS_RESOLVE_UNIX: the unix-socket allow-list in
//	       the kernel, no supervisor
//
// One pure function, downgrade, turns the policy (every right handled,
// every rule with its full rights) and the kernel's ABI into the ruleset
// Run applies and the Landlock protections explain lists, from one table
// of what each ABI handles. The rest of the plan asks that ruleset, not
// the ABI number: the gate is the supervisor when the ruleset lacks
// resolve_unix, and Run refuses a ruleset that cannot keep the
// filesystem allow-list.
//
// # Missing paths
//
// Decided per kind, and visible in explain ("MISSING"):
//
//   - directory, stateDir, readWritePaths, readOnlyPaths, path
//     entries (ExecPaths) and the command (CommandPaths) are required: Run fails with an error naming
//     the path. systemd also fails a unit whose ReadOnlyPaths= are
//     missing, and a silently skipped read-only path would hide a typo.
//     Build does not fail (explain and check must work on a machine
//     without them); it marks the rule Missing.
//   - the system baseline, device nodes and /proc, /sys views are
//     optional: skipped when absent on this host (a container may lack
//     /lib64 or /dev/tty). /proc is whatever the caller's mount
//     namespace holds: the launcher, as root, mounts a private one with
//     hidepid=invisible first (systemd's ProtectProc=invisible under
//     User=), so other users' processes are not listed; with a PID
//     namespace Run replaces it with that namespace's own (see "PID
//     namespace").
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
// socketpair(2) of AF_UNIX allow only SOCK_STREAM and SOCK_SEQPACKET
// (with SOCK_NONBLOCK and SOCK_CLOEXEC); every other type fails with
// EACCES, SOCK_DGRAM and SOCK_RAW too, which the kernel's unix_create
// turns into a datagram socket. An unconnected datagram send carries its
// address inside sendmsg's msghdr, which seccomp cannot read, so it
// cannot be gated. socketpair is denied too, because a datagram
// socketpair end can sendto(2) any unbound-peer datagram socket on the
// host (measured here). syslog(3) to /dev/log and sd_notify fail.
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
// Three filters, stacked on the one thread that forks the server; the
// kernel runs them all and the most restrictive action wins. They are
// split by what the kernel should log, since it audits a call per the
// filter whose action won (SECCOMP_FILTER_FLAG_LOG is per filter):
//
//  1. routine, without the log bit and with the listener: the user
//     notifications of connect (and bind) and the ENOSYS answers that
//     callers fall back from as a matter of course (clone3 before every
//     glibc thread and posix_spawn, openat2, io_uring). With one logged
//     filter these were most of the audit records (211 of 238 in one
//     run) and used up the kernel's printk rate limit before the real
//     denials;
//  2. the socket allow-list, with the log bit (below);
//  3. the deny-list, with the log bit (default allow), with the errno
//     each call needs: mounts and namespaces, clone with CLONE_NEW* flags
//     (EPERM; clone3 is ENOSYS in the routine filter, so glibc falls back
//     to clone, whose flags seccomp can read), kernel and host changes,
//     ptrace and other ways into other processes, bpf, the keyring,
//     TIOCSTI and TIOCLINUX, personality flags that turn off ASLR or make
//     memory executable, and set-user/group-ID modes in chmod and
//     creating opens (EPERM).
//
// The log bit is set where libseccomp supports it. Syscalls of other
// ABIs (32-bit int 0x80, x32) kill the process in filters 1 and 3, so
// socketcall and friends are no bypass; filter 3 is loaded last, so the
// kernel, which keeps the first of equal actions it walks (newest
// first), logs that kill for it.
//
// Socket creation is an allow-list (DESIGN.md "Deny by default, decided
// from the kernel's view"), SeccompPlan.Sockets: AF_UNIX stream and
// seqpacket (and datagram when Landlock gates unix sockets, ABI ≥ 9);
// AF_INET and AF_INET6 TCP (protocol 0 or IPPROTO_TCP) and UDP (0 or
// IPPROTO_UDP); AF_NETLINK SOCK_RAW or SOCK_DGRAM with NETLINK_ROUTE;
// as type flags only SOCK_NONBLOCK and SOCK_CLOEXEC; socketpair only for
// the AF_UNIX types. Everything else fails: an unlisted family with
// EAFNOSUPPORT, an unlisted type or flag bit with EACCES (AF_UNIX) or
// EPERM, an unlisted protocol with EPROTONOSUPPORT (what a kernel
// without Multipath TCP says, so Go and curl fall back to TCP). That
// includes families, types and bits no kernel has yet. Arguments are
// compared on their low 32 bits, as the kernel reads an int.
//
// The allow-list is a small classic-BPF program assembled by the
// launcher (socketfilter_linux.go), not a libseccomp rule set:
// libseccomp cannot express "allow these, deny the rest" inside a
// default-allow filter (a rule whose action equals the default is
// rejected, and ERRNO outranks ALLOW), so it would take the exact
// complement, hundreds of masked-equal rules that would have to be
// proven total. The program compares family, then type with the allowed
// flag bits masked off, then protocol, and falls through to a deny at
// every level, which is total by construction; it is about 80
// instructions and costs six for any other syscall.
//
// Nothing restricts W^X: Bun and Node JIT keep working.
//
// # Start-up order
//
// Below ABI 9, [Run] starts the server from a new OS thread of the
// launcher (the supervisor) that it confines first; no second program
// starts before the server. Meanwhile the calling goroutine resolves the
// instance user (NSS) and another compiles the seccomp filter
// (libseccomp). On the new, locked thread:
//
//  1. join the calling thread's network, IPC and mount namespaces where
//     they differ (the launcher's netns and private /proc), and as root
//     make the PID namespace and its /proc (see "PID namespace");
//  2. apply Landlock (opening the rule paths, which checks them);
//  3. as root, clear ambient and inheritable capabilities and refuse
//     securebits that keep capabilities across a uid change; started as
//     the instance user, drop every capability and verify;
//  4. load the three seccomp filters (see "Seccomp"), the routine one
//     first with SECCOMP_FILTER_FLAG_NEW_LISTENER (only one filter of a
//     chain may have a listener); the notify fd stays in the process for
//     the gate;
//  5. mark every fd from 3 up close-on-exec and fork (Go's
//     syscall.ForkExec): the child, still before execve, switches to
//     the instance user (setgroups, setgid, setuid: leaving uid 0 clears
//     the permitted, effective and ambient sets), gets its own session,
//     arms PR_SET_PDEATHSIG(SIGKILL) and checks its parent is alive,
//     then execs the target.
//
// # PID namespace
//
// As root ([Plan.PIDNamespace], from [Caps.Root]) the thread does more
// between steps 1 and 2, while it is still unconfined (Landlock and
// seccomp forbid all of it later):
//
//   - it unshares CLONE_NEWNS, a copy of the mount namespace it joined,
//     and makes every mount in it a slave, so that nothing mounted there
//     reaches another thread or the host, even when Run is called in the
//     host's mount namespace;
//   - it unshares CLONE_NEWPID, which sets only the thread's
//     pid_ns_for_children;
//   - it starts the guard (guard_linux.c): a raw clone, not a second
//     program, that is pid 1 of the new namespace, root and unconfined.
//     The guard resets the inherited signal handlers, arms
//     PR_SET_PDEATHSIG(SIGKILL) and checks through a pidfd that the
//     supervisor is still alive, gets a session of its own, is not
//     dumpable, closes every fd but an error pipe, and mounts the
//     namespace's own proc on /proc (nosuid, nodev, noexec,
//     hidepid=invisible; hidepid=2 on kernels before 5.8), which only a
//     process of the namespace can do. It reports on the pipe and from
//     then on only reaps the orphans of the namespace; it never execs and
//     runs nothing of the sandbox. The thread waits for that report, so
//     the Landlock rule for /proc (added by fd) is on the new proc.
//
// Step 5 then forks the server from the confined thread as without a
// namespace, but in C (guard_linux.c: vfork, session, user switch,
// parent-death signal, chdir, execve), because Go's ForkExec checks the
// parent-death signal against getppid(2), which is 0 for a child whose
// parent is outside its namespace; the C child checks the supervisor's
// pidfd instead. The server is pid 2 of the namespace and the
// supervisor's child, so exit status, signal forwarding and the
// parent-death signal are those of the path without a namespace; inside,
// getppid(2) answers 0. When the server has been reaped (or a start
// failed after the guard existed) the supervisor SIGKILLs the guard, and
// the kernel kills everything left in the namespace, background jobs in
// sessions of their own included; only then, because a dying init waits
// until every process of its namespace has been reaped. Killing the
// supervisor kills the guard (parent-death signal) and so the namespace.
// The guard is killed from an unconfined thread: Landlock's signal scope
// (ABI ≥ 6) keeps the confined thread from signalling it.
//
// Nothing outside the namespace can then be signalled, re-limited
// (prlimit), rescheduled (setpriority, sched_setaffinity,
// sched_setscheduler, ioprio_set), traced or found by pid: those calls
// answer ESRCH. Inside, /proc lists the sandbox's processes by the pids
// they have there, so ps, pgrep, pkill, kill of a pid read from /proc and
// /proc/<getpid()> work, and nothing of the host is listed. The guard is
// root, so hidepid=invisible hides it too (/proc/1 is ENOENT); the server
// (another uid, no capabilities, no_new_privs) can neither signal, trace
// nor read it.
//
// The gate is unaffected: a notification's pid is translated into the
// supervisor's namespace, and the gate's goroutines run on other threads,
// in the launcher's mount namespace, whose /proc is the host namespace's;
// they resolve callers there by host pid. The confining thread itself has
// no pid in the new namespace, so /proc/self does not resolve on it after
// the mount; nothing on it reads /proc after that (libseccomp compiles on
// another goroutine, the credentials and fds are plain system calls).
//
// Started as the instance user (systemd User=) run cannot make a PID
// namespace; the unit's PrivatePIDs= (systemd ≥ 257, set by the NixOS
// module) and cgroup do that part. There the launcher's pid 1 is its own
// init (internal/pidinit), [Caps.OwnPIDNamespace] is set and explain says
// enforced; without it, DEGRADED. On the ABI ≥ 9 direct path
// there is no supervisor to hold a guard: DEGRADED too.
//
// Steps 1–4 act on that thread only, on purpose: a forked child
// inherits the namespaces, Landlock domain, seccomp filter and
// no_new_privs of the thread that forks, and the supervisor's other
// threads stay unconfined. Nothing is signalled to every thread (psx,
// glibc setxid, TSYNC), which cost about 10 ms per start. As root the
// thread keeps uid 0: the server (the instance user) cannot signal or
// trace it. The thread is never unlocked; it waits until the server is
// reaped, because PR_SET_PDEATHSIG fires when the thread that forked
// exits, and then ends with its goroutine (the Go runtime destroys a
// thread whose goroutine exits locked).
//
// Since that thread shares the server's Landlock domain, Landlock no
// longer separates the server from it: the supervisor makes itself
// non-dumpable (PR_SET_DUMPABLE 0), so its memory, fds and ptrace need
// CAP_SYS_PTRACE, which the server never has.
//
// When the launcher itself runs as the instance user (systemd User=),
// that one thread has the server's uid and Landlock domain, and Landlock
// lets a process signal its own domain: the server could tgkill(2) it,
// stopping or killing its own supervisor (red-team pass 3). So the
// server's fork restricts itself once more, between fork and exec, with
// a ruleset that only scopes signals (ABI ≥ 6): the server's domain is
// then nested in the thread's, and from there only its own descendants
// can be signalled. WARNING: below ABI 6 there is no signal scope; the
// server can stop or kill its supervisor there, which fails closed (a
// killed supervisor takes the server with it, PR_SET_PDEATHSIG; a
// stopped one answers no connect).
//
// Any failure before execve is returned by Run; the target never runs
// half-confined.
//
// Start-up costs about 1.5–2 ms more than a bare fork and exec on the
// CI machine (BenchmarkStartupSandboxed vs BenchmarkStartupBare), and
// a few ms more again with the PID namespace, its mount namespace and
// its guard (as root; the guard is a fork of the launcher); the
// re-executed Go child of earlier versions cost 8–9 ms.
//
// The child gets its own session and process group: a terminal's SIGINT
// reaches only the supervisor, which forwards SIGTERM, SIGINT, SIGHUP
// and SIGCONT once, and SIGCONT after every SIGTERM (as systemd does), so
// that a server that stopped itself still ends. When the child exits, its
// process group is killed.
//
// WARNING: without a PID namespace (run started as the instance user,
// or the ABI ≥ 9 direct path), descendants that leave the process group
// (setsid) survive the supervisor; their connects then fail (ENOSYS).
// Under systemd, KillMode=control-group (the default) ends them with the
// unit.
//
// On ABI ≥ 9 there is no supervisor: Run confines the calling thread
// (Landlock, seccomp without a listener, then the user switch with
// per-thread setgroups, setresgid and setresuid, verified) and execs
// the target from it; execve ends the other threads.
//
// # Example
//
//	caps := sandbox.DetectCaps()
//	plan, err := sandbox.Build(in, caps)
//	if err != nil { … }
//	fmt.Print(plan) // explain
//	code, err := sandbox.Run(ctx, plan, sandbox.Command{Path: bin, Args: argv, Env: env, Dir: in.Directory}, log)
package sandbox
