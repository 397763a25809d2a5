package sandbox

import (
	"errors"
	"testing"
)

func TestGateUsableFollowsYama(t *testing.T) {
	for _, tc := range []struct {
		scope int
		cap   bool
		ok    bool
	}{
		{NoYama, false, true}, {0, false, true}, {1, false, true},
		{2, true, true}, {2, false, false}, {3, true, false},
	} {
		err := gateUsable(tc.scope, tc.cap)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrGateUnavailable)) {
			t.Errorf("gateUsable(%d, CAP_SYS_PTRACE %v) = %v, want ok=%v", tc.scope, tc.cap, err, tc.ok)
		}
	}
}
