package launcher

import (
	"strings"
	"testing"
)

func TestPrintableEscapesTerminalAndLogInjection(t *testing.T) {
	in := "ok\n<0>opencode-launcher: FORGED\x1b]0;pwned\x07 done"
	got := printable(in, 300)
	if strings.ContainsAny(got, "\n\x1b\x07") {
		t.Errorf("printable(%q) = %q still holds control characters", in, got)
	}
	if !strings.Contains(got, `\n<0>opencode-launcher: FORGED\x1b]0;pwned\a done`) {
		t.Errorf("printable(%q) = %q", in, got)
	}
	if got := printable(strings.Repeat("a", 500), 10); got != "aaaaaaaaaa…" {
		t.Errorf("cap: %q", got)
	}
}
