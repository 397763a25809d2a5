package launcher

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerCarriesInstanceOnce(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, "web", slog.LevelInfo)
	l.Info("denied", "instance", "web", "path", "/run/x.sock")
	l.With("k", "v").Warn("other")
	l.Debug("hidden")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2 (debug filtered):\n%s", len(lines), buf.String())
	}
	for _, line := range lines {
		if n := strings.Count(line, "instance=web"); n != 1 {
			t.Errorf("line carries instance=web %d times: %s", n, line)
		}
	}
	if !strings.Contains(lines[0], "path=/run/x.sock") || !strings.Contains(lines[1], "k=v") {
		t.Errorf("attributes lost:\n%s", buf.String())
	}
}

func TestSyslogPriorities(t *testing.T) {
	for lvl, want := range map[slog.Level]int{slog.LevelError: 3, slog.LevelWarn: 4, slog.LevelInfo: 6, slog.LevelDebug: 7} {
		if got := syslogPriority(lvl); got != want {
			t.Errorf("priority(%v) = %d, want %d", lvl, got, want)
		}
	}
}

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
