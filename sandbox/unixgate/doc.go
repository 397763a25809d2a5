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
// AF_INET, AF_INET6 and AF_UNSPEC are connected on the caller's behalf with the kernel's
// own errno. Other families are connected with the caller's credentials, so that
// capability checks (netlink groups) see the caller, not the supervisor.
//
// # Credentials
//
// The on-behalf open and connect run on a locked OS thread that temporarily takes the
// caller's effective uid, gid, supplementary groups and effective capabilities (raw,
// per-thread syscalls), so a server's SO_PEERCRED shows the caller's uid and file modes
// are checked against the caller. The pid in SO_PEERCRED is always the supervisor's:
// servers that authorise by pid see the wrong process.
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
