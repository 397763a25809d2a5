// Package logging is the launcher's slog handler: logfmt lines that carry
// the instance once, with a syslog priority prefix when stderr is journald.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// New returns the launcher's logger: one line per event, each carrying
// instance=<name>. When stderr is connected to journald (JOURNAL_STREAM names
// it), every line is prefixed with its syslog priority (<3> error … <7> debug),
// which journald strips and stores as PRIORITY; in a terminal it is plain logfmt.
func New(w io.Writer, instance string, level slog.Level) *slog.Logger {
	h := &prioHandler{
		mu:      &sync.Mutex{},
		out:     w,
		buf:     &bytes.Buffer{},
		journal: stderrIsJournal(w),
	}
	h.inner = slog.NewTextHandler(h.buf, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTimeInJournal(h.journal)})
	if instance != "" {
		h.hasInstance = true
		h.inner = h.inner.WithAttrs([]slog.Attr{slog.String("instance", instance)})
	}
	return slog.New(h)
}

type prioHandler struct {
	mu      *sync.Mutex
	out     io.Writer
	buf     *bytes.Buffer
	inner   slog.Handler
	journal bool
	// hasInstance: the logger already carries instance=, so packages that
	// add their own (sandbox, unixgate) do not print it twice.
	hasInstance bool
}

func (h *prioHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *prioHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if h.hasInstance {
		r = withoutAttr(r, "instance")
	}
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	if h.journal {
		fmt.Fprintf(h.out, "<%d>", syslogPriority(r.Level))
	}
	_, err := h.out.Write(h.buf.Bytes())
	return err
}

func (h *prioHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(as)
	return &c
}

func (h *prioHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

func syslogPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// journald stamps every line itself; a second timestamp is noise.
func dropTimeInJournal(journal bool) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if journal && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
}

// stderrIsJournal follows sd_journal_stream_fd's convention: JOURNAL_STREAM is
// "dev:ino" of the stream, compared with the fd we write to.
func stderrIsJournal(w io.Writer) bool {
	js := os.Getenv("JOURNAL_STREAM")
	f, ok := w.(*os.File)
	if js == "" || !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func withoutAttr(r slog.Record, key string) slog.Record {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	if !found {
		return r
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != key {
			out.AddAttrs(a)
		}
		return true
	})
	return out
}
