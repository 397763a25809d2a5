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
// fail with EISCONN (or EALREADY), although the socket is connected as asked. lostAnswers
// remembers such answers so the restarted call gets the one the caller missed.
//
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV on the filter would avoid this, at the price of
// signals waiting until the answer (up to a TCP connect timeout); this works without it.
type lostAnswers struct {
	mu sync.Mutex
	m  map[uint64]lostAnswer // by socket inode
}

type lostAnswer struct {
	addr  []byte
	errno unix.Errno
	at    time.Time
}

const (
	maxLostAnswers = 256
	lostAnswerTTL  = 30 * time.Second
)

// record notes that the answer errno for connecting socket cfd to addr never arrived.
// Only answers after which the socket changed state matter: 0 and EINPROGRESS.
func (l *lostAnswers) record(cfd int, addr []byte, errno unix.Errno) {
	if errno != 0 && errno != unix.EINPROGRESS {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(cfd, &st) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= maxLostAnswers {
		l.m = make(map[uint64]lostAnswer)
	}
	l.m[st.Ino] = lostAnswer{addr: bytes.Clone(addr), errno: errno, at: time.Now()}
}

// replay maps the kernel's errno for a repeated connect of cfd to addr to the answer the
// caller missed: EISCONN after a lost success is success, EALREADY after a lost
// EINPROGRESS is EINPROGRESS. Anything else passes through.
func (l *lostAnswers) replay(cfd int, addr []byte, errno unix.Errno) unix.Errno {
	if errno != unix.EISCONN && errno != unix.EALREADY {
		return errno
	}
	l.mu.Lock()
	empty := len(l.m) == 0
	l.mu.Unlock()
	if empty {
		return errno
	}
	var st unix.Stat_t
	if unix.Fstat(cfd, &st) != nil {
		return errno
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.m[st.Ino]
	if !ok || time.Since(a.at) > lostAnswerTTL || !bytes.Equal(a.addr, addr) {
		return errno
	}
	delete(l.m, st.Ino)
	switch {
	case a.errno == 0 && errno == unix.EISCONN:
		return 0
	case a.errno == unix.EINPROGRESS && errno == unix.EALREADY:
		return unix.EINPROGRESS
	}
	return errno
}
