package unixgate

import (
	"testing"
	"time"
)

func TestLogLimiterBurstThenRateAndCountsSuppressed(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLogLimiter(10, 20, func() time.Time { return now })
	allowed := 0
	for range 1000 {
		if ok, _ := l.allow(); ok {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("a burst of 1000 let %d lines through, want the burst of 20", allowed)
	}
	now = now.Add(time.Second)
	ok, suppressed := l.allow()
	if !ok || suppressed != 980 {
		t.Fatalf("after a second: allow=%v suppressed=%d, want true and 980", ok, suppressed)
	}
	for i := 0; i < 9; i++ {
		if ok, _ := l.allow(); !ok {
			t.Fatalf("line %d of the next second refused; the rate is 10/s", i+2)
		}
	}
	if ok, _ := l.allow(); ok {
		t.Fatal("11th line within the second allowed")
	}
}
