package unixgate

import (
	"sync"
	"time"
)

// logLimiter bounds the denial log lines one instance can cause: a hostile
// child can connect to denied sockets in a loop, and every line costs the
// supervisor time and the journal space. Lines beyond the budget are counted
// and the count is reported on the next line that goes through, so nothing
// is lost silently.
type logLimiter struct {
	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	tokens     float64
	last       time.Time
	suppressed int
	now        func() time.Time
}

// Default budget: enough for every honest denial an operator wants to read,
// far below what a loop of connects could write.
const (
	denyLogRate  = 10
	denyLogBurst = 20
)

func newLogLimiter(rate, burst float64, now func() time.Time) *logLimiter {
	return &logLimiter{rate: rate, burst: burst, tokens: burst, now: now}
}

// allow reports whether a line may be written now, and how many lines were
// suppressed since the last one that was.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+t.Sub(l.last).Seconds()*l.rate)
	}
	l.last = t
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
