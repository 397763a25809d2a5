package childproc

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// TailLines is how many lines of a failed script's output go into the error.
const TailLines = 20

// maxTailLine clips each kept line, so that a script printing one huge line
// cannot blow up the error message or the journal.
const maxTailLine = 512

// TailBuffer is an io.Writer that keeps only the last n lines written to it.
type TailBuffer struct {
	mu      sync.Mutex
	n       int
	lines   []string
	partial []byte
}

func NewTailBuffer(n int) *TailBuffer { return &TailBuffer{n: n} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rest := p
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			t.partial = appendClipped(t.partial, rest)
			return len(p), nil
		}
		t.partial = appendClipped(t.partial, rest[:i])
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		rest = rest[i+1:]
	}
}

// appendClipped keeps at most maxTailLine+1 bytes, the extra byte marking
// that the line was cut.
func appendClipped(dst, src []byte) []byte {
	room := maxTailLine + 1 - len(dst)
	if room <= 0 {
		return dst
	}
	if len(src) > room {
		src = src[:room]
	}
	return append(dst, src...)
}

func (t *TailBuffer) push(line string) {
	if len(line) > maxTailLine {
		line = line[:maxTailLine] + "…"
	}
	line = strings.TrimRight(line, "\r")
	t.lines = append(t.lines, line)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

// Lines returns the kept lines, including an unterminated last line.
func (t *TailBuffer) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
		if len(out) > t.n {
			out = out[len(out)-t.n:]
		}
	}
	return out
}

// PrefixWriter writes each line to w with a prefix, so that script output in
// the journal says which script printed it.
type PrefixWriter struct {
	mu     sync.Mutex
	W      io.Writer
	Prefix string
	midway bool
}

func (pw *PrefixWriter) Write(p []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var b bytes.Buffer
	for _, c := range p {
		if !pw.midway {
			b.WriteString(pw.Prefix)
			pw.midway = true
		}
		b.WriteByte(c)
		if c == '\n' {
			pw.midway = false
		}
	}
	if _, err := pw.W.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
