// The guard: pid 1 of the sandbox's PID namespace (see guard_linux.go).
//
// Everything after the first clone runs in a copy of the launcher that has
// one thread and a Go runtime that will never run again, so it uses raw
// system calls only: no malloc, no stdio, no glibc wrapper that keeps state
// about threads (setuid and friends broadcast to every thread glibc knows).

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guard_linux.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// Kernel sigset: 64 signals, one word (what rt_sig* expect as sigsetsize 8).
typedef uint64_t ksigset;
#define KSIG(s) ((ksigset)1 << ((s) - 1))

static long sys(long n, long a, long b, long c, long d, long e) {
	long r = syscall(n, a, b, c, d, e);
	return r < 0 ? -errno : r;
}

// report writes where it failed to the error pipe and ends this process.
// A short or failed write leaves the pipe empty: the supervisor then sees
// the guard's exit status (127) instead.
static void __attribute__((noreturn)) report(int fd, int stage, long err) {
	int32_t msg[2] = {stage, (int32_t)(-err)};
	sys(SYS_write, fd, (long)msg, sizeof msg, 0, 0);
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}

// server is the guard's child: it becomes the instance user and execs the
// target, as Go's fork child did before the guard existed.
static void __attribute__((noreturn)) server(const struct ocnix_guard_args *a) {
	ksigset none = 0;
	long r;
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
	// After the user switch, which clears it. The guard is pid 1: if it
	// is gone, so is this namespace, but do not count on that.
	if ((r = sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_PDEATHSIG, r);
	if (sys(SYS_getppid, 0, 0, 0, 0, 0) != 1)
		report(a->errfd, OCNIX_STAGE_PDEATHSIG, -ESRCH);
	if ((r = sys(SYS_chdir, (long)a->dir, 0, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_CHDIR, r);
	r = sys(SYS_execve, (long)a->path, (long)a->argv, (long)a->envp, 0, 0);
	report(a->errfd, OCNIX_STAGE_EXEC, r);
}

// guard runs as pid 1 of the new PID namespace. It never returns.
static void __attribute__((noreturn)) guard(const struct ocnix_guard_args *a) {
	long r;
	// Go's handlers were inherited; nothing of the Go runtime may run
	// here. All signals are still blocked (see ocnix_start_guard).
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
	// Die with the supervisor. Checked after arming: if the supervisor
	// died before, its pidfd is already readable.
	if ((r = sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_GUARD, r);
	struct pollfd p = {.fd = a->parentfd, .events = POLLIN};
	if (sys(SYS_poll, (long)&p, 1, 0, 0, 0) != 0)
		report(a->errfd, OCNIX_STAGE_GUARD, -ESRCH);
	// Own session, so a terminal's SIGINT reaches only the supervisor,
	// which forwards it once.
	if ((r = sys(SYS_setsid, 0, 0, 0, 0, 0)) < 0)
		report(a->errfd, OCNIX_STAGE_GUARD, r);
	// Keep nothing of the launcher but stdio and the error pipe (the
	// notify fd, the parent's pidfd, ...): every other fd was marked
	// close-on-exec, but the guard never execs.
	if (a->errfd > 3)
		sys(SYS_close_range, 3, a->errfd - 1, 0, 0, 0);
	sys(SYS_close_range, a->errfd + 1, ~0U, 0, 0, 0);

	long pid = sys(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		report(a->errfd, OCNIX_STAGE_FORK, pid);
	if (pid == 0)
		server(a);
	sys(SYS_close, a->errfd, 0, 0, 0, 0);

	ksigset wait = KSIG(SIGTERM) | KSIG(SIGINT) | KSIG(SIGHUP) | KSIG(SIGCHLD);
	for (;;) {
		siginfo_t info;
		long s = sys(SYS_rt_sigtimedwait, (long)&wait, (long)&info, 0, sizeof wait, 0);
		if (s == SIGTERM || s == SIGINT || s == SIGHUP) {
			sys(SYS_kill, pid, s, 0, 0, 0);
			continue;
		}
		if (s != SIGCHLD)
			continue;
		// As init the guard inherits every orphan of the namespace:
		// reap them all, and leave with the server.
		for (;;) {
			int st = 0;
			long w = sys(SYS_wait4, -1, (long)&st, WNOHANG, 0, 0);
			if (w == -EINTR)
				continue;
			if (w <= 0)
				break;
			if (w != pid)
				continue;
			// The kernel SIGKILLs what is left in the namespace
			// when its init exits.
			int code = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
			syscall(SYS_exit_group, code);
		}
	}
}

long ocnix_start_guard(const struct ocnix_guard_args *a) {
	// Block every signal around the clone (as Go's ForkExec does), so
	// that no Go handler runs in the child before guard resets them.
	ksigset all = ~(ksigset)0, old;
	long r = sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, sizeof all, 0);
	if (r < 0)
		return r;
	// A raw clone, not fork(3): no atfork handlers, no glibc bookkeeping.
	// The calling thread has unshared CLONE_NEWPID, so the child is pid 1
	// of a new PID namespace.
	long pid = sys(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		guard(a);
	sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, sizeof old, 0);
	return pid;
}
