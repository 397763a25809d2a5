// The guard (pid 1 of the sandbox's PID namespace) and the server's fork;
// see guard_linux.go.
//
// Both children run in a copy of the launcher whose Go runtime must never
// run again (the guard has one thread; the server shares the launcher's
// memory until execve), so they use raw system calls only: no malloc, no
// stdio, no glibc wrapper that keeps state about threads (setuid and
// friends broadcast to every thread glibc knows).

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guard_linux.h"

// Kernel sigset: 64 signals, one word (what rt_sig* expect as sigsetsize 8).
typedef uint64_t ksigset;
#define KSIG(s) ((ksigset)1 << ((s) - 1))

static long sys(long n, long a, long b, long c, long d, long e) {
	long r = syscall(n, a, b, c, d, e);
	return r < 0 ? -errno : r;
}

static void say(int fd, int stage, long err) {
	int32_t msg[2] = {stage, (int32_t)(-err)};
	sys(SYS_write, fd, (long)msg, sizeof msg, 0, 0);
}

// report writes where it failed to the error pipe and ends this process.
// A short or failed write leaves the pipe empty: the supervisor then sees
// a short read (guard) or the exit status 127 (server).
static void __attribute__((noreturn)) report(int fd, int stage, long err) {
	say(fd, stage, err);
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}

// default_signals drops the Go handlers the child inherited; nothing of
// the Go runtime may run in it. Signals are still blocked (see the
// ocnix_start_* functions).
static void default_signals(void) {
	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		struct {
			void *handler;
			unsigned long flags;
			void *restorer;
			ksigset mask;
		} act = {0};
		act.handler = SIG_DFL;
		sys(SYS_rt_sigaction, s, (long)&act, 0, sizeof(ksigset), 0);
	}
}

// die_with_parent arms PR_SET_PDEATHSIG(SIGKILL) and checks through the
// supervisor's pidfd that it has not died before: getppid(2) cannot tell,
// since the parent is outside the child's PID namespace (it answers 0).
static long die_with_parent(int parentfd) {
	long r = sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (r < 0)
		return r;
	struct pollfd p = {.fd = parentfd, .events = POLLIN};
	if (sys(SYS_poll, (long)&p, 1, 0, 0, 0) != 0)
		return -ESRCH;
	return 0;
}

// guard runs as pid 1 of the new PID namespace, as root and unconfined
// (it was cloned before Landlock and seccomp). It mounts the namespace's
// proc, reports, and from then on only reaps. It never returns and never
// runs anything of the sandbox.
static void __attribute__((noreturn)) guard(int errfd, int parentfd) {
	long r;
	default_signals();
	if ((r = die_with_parent(parentfd)) < 0)
		report(errfd, OCNIX_STAGE_GUARD, r);
	// Own session, so a terminal's signals never reach it; not dumpable
	// (inherited from the supervisor; said again), so only
	// CAP_SYS_PTRACE reaches its memory.
	if ((r = sys(SYS_setsid, 0, 0, 0, 0, 0)) < 0)
		report(errfd, OCNIX_STAGE_GUARD, r);
	if ((r = sys(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0)) < 0)
		report(errfd, OCNIX_STAGE_GUARD, r);
	if ((r = sys(SYS_chdir, (long)"/", 0, 0, 0, 0)) < 0)
		report(errfd, OCNIX_STAGE_GUARD, r);
	// Keep nothing of the launcher but the error pipe and the supervisor's
	// pidfd (not stdio, the notify fd, ...): the guard never execs, so
	// close-on-exec does not help.
	int lo = errfd < parentfd ? errfd : parentfd;
	int hi = errfd < parentfd ? parentfd : errfd;
	if (lo > 0)
		sys(SYS_close_range, 0, lo - 1, 0, 0, 0);
	if (hi - lo > 1)
		sys(SYS_close_range, lo + 1, hi - 1, 0, 0, 0);
	sys(SYS_close_range, hi + 1, ~0U, 0, 0, 0);
	// SIGCHLD (blocked, as every signal here) as a file, to wait on it and
	// on the supervisor's pidfd at once.
	ksigset chld = KSIG(SIGCHLD);
	long sfd = sys(SYS_signalfd4, -1, (long)&chld, sizeof chld, SFD_CLOEXEC, 0);
	if (sfd < 0)
		report(errfd, OCNIX_STAGE_GUARD, sfd);
	// The proc of this namespace, over the one the thread's private mount
	// namespace had (the launcher's, of the host's PID namespace). Only a
	// process of this namespace can mount it.
	unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	r = sys(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", flags, (long)"hidepid=invisible");
	if (r == -EINVAL) // kernels before 5.8 know only the numeric form
		r = sys(SYS_mount, (long)"proc", (long)"/proc", (long)"proc", flags, (long)"hidepid=2");
	if (r < 0)
		report(errfd, OCNIX_STAGE_PROC, r);
	say(errfd, OCNIX_STAGE_OK, 0);
	sys(SYS_close, errfd, 0, 0, 0, 0);

	// As init it inherits every orphan of the namespace: reap them all,
	// until the supervisor kills it (which kills the namespace), or the
	// supervisor is gone. The parent-death signal alone does not cover
	// that: it is sent by the exiting parent thread, the confining one,
	// and Landlock's signal scope refuses a signal from that thread's
	// domain to the guard, which was cloned before it (the guard then
	// lived on, with every background job of the sandbox, whenever that
	// thread was the supervisor's last to exit). The pidfd turns readable
	// when the whole supervisor has exited, whatever the order.
	for (;;) {
		struct pollfd p[2] = {{.fd = parentfd, .events = POLLIN}, {.fd = (int)sfd, .events = POLLIN}};
		if (sys(SYS_poll, (long)p, 2, -1, 0, 0) < 0)
			continue;
		if (p[0].revents)
			sys(SYS_exit_group, 137, 0, 0, 0, 0);
		if (!p[1].revents)
			continue;
		struct signalfd_siginfo si;
		sys(SYS_read, sfd, (long)&si, sizeof si, 0, 0);
		for (;;) {
			long w = sys(SYS_wait4, -1, 0, WNOHANG | __WALL, 0, 0);
			if (w == -EINTR)
				continue;
			if (w <= 0)
				break;
		}
	}
}

long ocnix_start_guard(int errfd, int parentfd) {
	// Block every signal around the clone (as Go's ForkExec does), so
	// that no Go handler runs in the child before guard resets them. The
	// guard keeps them blocked: it waits for SIGCHLD, and as init of its
	// namespace gets no other signal from inside.
	ksigset all = ~(ksigset)0, old;
	long r = sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, sizeof all, 0);
	if (r < 0)
		return r;
	// A raw clone, not fork(3): no atfork handlers, no glibc bookkeeping.
	// The calling thread has unshared CLONE_NEWPID, so the child is pid 1
	// of a new PID namespace.
	long pid = sys(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		guard(errfd, parentfd);
	sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, sizeof old, 0);
	return pid;
}

// server becomes the instance user and execs the target, as Go's fork
// child does without a PID namespace. It runs in a vfork child: the
// launcher's memory is shared until execve, so it writes nothing but its
// own stack.
static void __attribute__((noreturn)) server(const struct ocnix_server_args *a) {
	ksigset none = 0;
	long r;
	default_signals();
	if ((r = sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof none, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_SIGMASK, r);
	// Own session: own process group, no controlling terminal.
	if ((r = sys(SYS_setsid, 0, 0, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_SETSID, r);
	if (a->drop) {
		if ((r = sys(SYS_setgroups, a->ngroups, (long)a->groups, 0, 0, 0)) < 0)
			report(a->errfd, OCNIX_STAGE_SETGROUPS, r);
		if ((r = sys(SYS_setresgid, a->gid, a->gid, a->gid, 0, 0)) < 0)
			report(a->errfd, OCNIX_STAGE_SETGID, r);
		// Leaving uid 0 clears the permitted, effective and ambient
		// capabilities (the securebits that would keep them were
		// refused before any fork).
		if ((r = sys(SYS_setresuid, a->uid, a->uid, a->uid, 0, 0)) < 0)
			report(a->errfd, OCNIX_STAGE_SETUID, r);
	}
	// After the user switch, which clears it.
	if ((r = die_with_parent(a->parentfd)) < 0)
		report(a->errfd, OCNIX_STAGE_PDEATHSIG, r);
	if ((r = sys(SYS_chdir, (long)a->dir, 0, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_CHDIR, r);
	// A Landlock domain of the server's own, nested in the thread's, that
	// scopes signals: the forking thread shares the instance's uid when the
	// launcher runs as the instance user, and in one domain Landlock lets
	// the server tgkill(2) it (stop or kill the supervisor). From the nested
	// domain only the server's own descendants can be signalled.
	if (a->scopefd >= 0 && (r = sys(SYS_landlock_restrict_self, a->scopefd, 0, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_SCOPE, r);
	r = sys(SYS_execve, (long)a->path, (long)a->argv, (long)a->envp, 0, 0);
	report(a->errfd, OCNIX_STAGE_EXEC, r);
}

long ocnix_start_server(const struct ocnix_server_args *a) {
	ksigset all = ~(ksigset)0, old;
	long r = sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, sizeof all, 0);
	if (r < 0)
		return r;
	// vfork, as Go's ForkExec (CLONE_VM|CLONE_VFORK): no copy of the
	// launcher's page tables, and this thread resumes once the child has
	// exec'd or failed. The child is in this thread's PID namespace for
	// children, the guard's.
	pid_t pid = vfork();
	if (pid == 0)
		server(a);
	int err = errno;
	sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, sizeof old, 0);
	return pid < 0 ? -err : pid;
}
