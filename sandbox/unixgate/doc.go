// Package unixgate enforces a unix-socket allow-list with seccomp user notification.
//
// Landlock below ABI 9 cannot see connect(2), so the sandbox's seccomp filter sends every
// connect to this supervisor instead (SECCOMP_RET_USER_NOTIF). [Serve] reads the caller's
// address once, decides on that private copy, and performs the connect itself on a
// pidfd_getfd copy of the caller's socket. It never answers CONTINUE: a CONTINUE lets the
// kernel re-read the caller's memory, which a second thread can change after the check.
//
// # Decision
//
// A pathname AF_UNIX address is resolved in the caller's root (relative paths against the
// calling thread's cwd), with the caller's credentials, pinned with O_PATH, and allowed only
// when the pinned object is a socket whose real path is an allow-list entry, lies beneath a
// directory entry, or lies beneath one of the instance's own read-write directories. The
// connect then goes to /proc/self/fd/N, so a symlink swapped after the check changes nothing.
//
// Everything else that is AF_UNIX fails with EACCES, and that includes paths that do not
// exist: ENOENT would let the sandbox probe for files it cannot see. Clients that retry on
// ENOENT or ECONNREFUSED (a server not yet started) see EACCES instead. Abstract addresses
// fail with EACCES too; Landlock's scoping (ABI 6) denies them anyway.
//
// Every decision follows the socket as the kernel holds it (SO_DOMAIN of the pidfd_getfd
// copy), never the sa_family the caller wrote. On an AF_UNIX socket an AF_UNIX address
// goes through the allow-list above, AF_UNSPEC (no path: a datagram disconnect, or the
// kernel's EINVAL) goes to the kernel, and any other family gets unix_validate_addr's
// EINVAL. AF_INET and AF_INET6 sockets are connected on the caller's behalf with the
// kernel's own errno; AF_NETLINK sockets with the caller's credentials, so that capability
// checks (netlink groups) see the caller, not the supervisor. A socket of any other family
// (the seccomp socket allow-list makes none, but one could be inherited) gets EACCES.
//
// # Bind
//
// With [Policy.Bind] set (an instance in the host's network namespace) the filter sends
// bind(2) too, and [Serve] binds its copy of the socket to its copy of the address, with
// the caller's credentials: abstract names and autobind fail with EACCES; a pathname's
// parent is resolved and pinned as for connect and must really lie in one of the
// instance's own directories, and the bind goes to /proc/self/fd/N/<name>; on an AF_INET
// or AF_INET6 socket, ports other than 0 and [BindPolicy.Ports] fail with EACCES, for TCP
// and UDP alike, the port read from the bytes the kernel reads (sin_port, sin6_port)
// whatever the address's family says: __inet_bind takes AF_UNSPEC with INADDR_ANY as
// AF_INET. A foreign family on a unix socket gets EINVAL; AF_NETLINK binds as it is; any
// other socket family gets EACCES. A bind whose answer a signal made the caller miss is
// replayed as success when it restarts (see lostAnswers).
//
// # Errors the caller sees
//
//   - the kernel's own errno for every allowed or non-unix connect (EINPROGRESS, EISCONN,
//     ECONNREFUSED, …); EBADF, EFAULT, EINVAL and ENOTSOCK as the kernel orders them;
//   - EACCES for a denied, missing, non-socket or abstract AF_UNIX target, or when the
//     caller's identity cannot be taken (one log line each);
//   - EAGAIN when MaxPending connects already wait, when the supervisor runs out of fds or
//     memory, and when a unix connect waited UnixConnectTimeout for a full backlog;
//   - EINTR for connects still waiting when Serve stops; ENOSYS for a notification that
//     is not a native connect(2).
//
// # Credentials
//
// The on-behalf open and connect run with the caller's effective uid, gid, supplementary
// groups and effective capabilities, so a server's SO_PEERCRED shows the caller's uid and
// file modes are checked against the caller (no confused deputy). The pid in SO_PEERCRED
// is always the supervisor's: servers that authorise by pid see the wrong process.
//
// Switching is per thread (raw syscalls on a locked OS thread) and costly, so the loop
// thread keeps the last caller's identity between connects (see threadIdentity) and
// switches again only for a caller with other credentials. While it does, its real and
// saved uid stay the supervisor's (the caller can neither signal nor ptrace it), and its
// effective capabilities are CAP_SYS_PTRACE, CAP_SETUID and CAP_SETGID, kept with
// SECBIT_NO_SETUID_FIXUP, none of which bypasses a permission check of open or connect.
// The caller can still renice the thread or change its CPU affinity (those check only the
// effective uid), which only slows its own connects. Threads are made the supervisor again
// before they return to the Go scheduler, or retired if that fails.
//
// An allowed socket named exactly by an allow-list entry is recognised by comparing the
// pinned inode with the one now linked at the entry, one stat instead of reading the real
// path (see allowInodes); a replaced or moved socket falls back to the real path.
//
// Credentials are read from /proc/<tid>/status and cached by pidfd inode while
// PIDFD_GET_INFO (Linux 6.13) reports the same ids, for tasks without capabilities only;
// root callers pay the status read on every connect.
//
// # Requirements on the caller
//
//   - Fork the sandboxed child from an OS thread that stays locked until the child exits:
//     PR_SET_PDEATHSIG fires when the forking thread ends, and the Go runtime ends a
//     thread when a goroutine exits while locked (Serve does that with a thread whose
//     credentials it cannot restore).
//   - The filter must deny chroot, pivot_root, setns and new mount namespaces: relative
//     paths and ".." are resolved from the caller's cwd but in the supervisor's root, and
//     each caller task's root is opened once and then reused (see rootCache).
//   - Linux 6.9 (PIDFD_THREAD) or newer; 6.6 for SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP.
//   - Without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, a signal can interrupt a caller
//     whose connect the supervisor already made; the restarted connect then gets the
//     lost answer replayed (see lostAnswers).
//
// # Bounds
//
// Connects that may block (blocking TCP, unix connects to a full backlog) move to worker
// goroutines, at most [Policy.MaxPending] at a time; beyond that the caller gets EAGAIN at
// once. A worker waits in short slices and gives up when the caller has gone, so an
// abandoned connect cannot pin a supervisor thread. Unix connects that wait longer than
// [UnixConnectTimeout] fail with EAGAIN, the kernel's own errno for a unix connect whose
// send timeout expired.
package unixgate
