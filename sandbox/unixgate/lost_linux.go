package unixgate

import (
	"bytes"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A caller's wait for our answer is interruptible: a signal (Go's preemption SIGURG is
// enough) makes the kernel drop the notification and, with SA_RESTART, issue the connect
// again. Our on-behalf connect has already happened by then, so the restarted call would
// fail with EISCONN (or EALREADY), although the socket is connected as asked.
//
// The answer need not fail to be lost. A caller woken by a signal a moment before our
// answer still goes the interrupted way when it gets the notification lock after us: the
// kernel (seccomp_do_user_notification) checks the wait's result, not the notification's
// state, so SECCOMP_IOCTL_NOTIF_SEND reports success and the call is restarted all the
// same. TestServeRaceNeverReachesDeniedSocket met this once in about 4000 connects on a
// 6.12 guest under QEMU's TCG. So every answer that changed the socket's state is kept,
// per caller thread, and a repeat of the same call (same thread, instruction, arguments,
// address bytes and socket) that the kernel refuses with EISCONN or EALREADY gets that
// answer again instead. The price: a program that connects a connected socket twice from
// the same instruction with the same arguments gets 0 rather than EISCONN once, which
// every connect loop takes as success anyway.
//
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV on the filter would avoid this, at the price of
// signals waiting until the answer (up to a TCP connect timeout); this works without it.
type lostAnswers struct {
	mu sync.Mutex
	m  map[int]lostAnswer // by caller tid
}

// site is a syscall as the caller made it: the kernel restarts a call with the same
// thread, instruction pointer and arguments.
type site struct {
	tid  int
	ip   uint64
	args [3]uint64
}

func siteOf(req *notifReq) site {
	return site{tid: int(req.Pid), ip: req.Data.IP, args: [3]uint64{req.Data.Args[0], req.Data.Args[1], req.Data.Args[2]}}
}

type lostAnswer struct {
	at    site
	ino   uint64 // the socket's inode
	addr  []byte
	errno unix.Errno
	when  time.Time
}

const (
	maxLostAnswers = 4096 // threads; tasksMax is 1024 by default
	lostAnswerTTL  = 30 * time.Second
)

// record keeps errno, the answer to the call at on socket cfd with addr, if it changed the
// socket's state (0, or EINPROGRESS for a connect); any other answer forgets the thread's
// last one.
func (l *lostAnswers) record(at site, cfd int, addr []byte, errno unix.Errno) {
	var st unix.Stat_t
	keep := (errno == 0 || errno == unix.EINPROGRESS) && unix.Fstat(cfd, &st) == nil
	l.mu.Lock()
	defer l.mu.Unlock()
	if !keep {
		delete(l.m, at.tid)
		return
	}
	if l.m == nil {
		l.m = make(map[int]lostAnswer)
	}
	if len(l.m) >= maxLostAnswers {
		now := time.Now()
		for tid, a := range l.m {
			if now.Sub(a.when) > lostAnswerTTL {
				delete(l.m, tid)
			}
		}
		if len(l.m) >= maxLostAnswers {
			clear(l.m)
		}
	}
	l.m[at.tid] = lostAnswer{at: at, ino: st.Ino, addr: bytes.Clone(addr), errno: errno, when: time.Now()}
}

// take returns, and forgets, the answer kept for a call at the same site on the same
// socket with the same address bytes.
func (l *lostAnswers) take(at site, cfd int, addr []byte) (unix.Errno, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.m[at.tid]
	if !ok || a.at != at || !bytes.Equal(a.addr, addr) || time.Since(a.when) > lostAnswerTTL {
		return 0, false
	}
	var st unix.Stat_t
	if unix.Fstat(cfd, &st) != nil || st.Ino != a.ino {
		return 0, false
	}
	delete(l.m, at.tid)
	return a.errno, true
}

// replay maps the kernel's errno for a repeated connect to the answer the caller may have
// missed: EISCONN after a success is success, EALREADY after EINPROGRESS is EINPROGRESS.
// Anything else passes through.
func (l *lostAnswers) replay(at site, cfd int, addr []byte, errno unix.Errno) unix.Errno {
	if errno != unix.EISCONN && errno != unix.EALREADY {
		return errno
	}
	prev, ok := l.take(at, cfd, addr)
	switch {
	case !ok:
		return errno
	case prev == 0 && errno == unix.EISCONN:
		return 0
	case prev == unix.EINPROGRESS && errno == unix.EALREADY:
		return unix.EINPROGRESS
	}
	return errno
}

// replayBind is replay for binds: a repeated bind after a success fails with EINVAL
// (already bound: inet) or EADDRINUSE (unix: unix_bind_bsd makes the socket file before
// it looks at the socket, and the first bind made it), and gets the success instead.
func (l *lostAnswers) replayBind(at site, cfd int, addr []byte, errno unix.Errno) unix.Errno {
	if errno != unix.EINVAL && errno != unix.EADDRINUSE {
		return errno
	}
	if prev, ok := l.take(at, cfd, addr); ok && prev == 0 {
		return 0
	}
	return errno
}
