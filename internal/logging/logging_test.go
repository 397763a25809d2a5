package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerCarriesInstanceOnce(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "web", slog.LevelInfo)
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
