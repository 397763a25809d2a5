package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestInnermostCodeWins(t *testing.T) {
	inner := Errorf(NoInput, "script %s missing", "/x")
	outer := With(OSErr, fmt.Errorf("setup: %w", inner))
	if c, ok := Of(outer); !ok || c != NoInput {
		t.Errorf("Of = %d, %v; want the inner NoInput", c, ok)
	}
	if With(OSErr, nil) != nil {
		t.Error("With(nil) must stay nil")
	}
	if _, ok := Of(errors.New("plain")); ok {
		t.Error("a plain error carries no code")
	}
	if c, _ := Of(Bugf("x %d", 1)); c != Bug {
		t.Errorf("Bugf code %d", c)
	}
}
