package childproc

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTailBuffer(t *testing.T) {
	long := strings.Repeat("x", maxTailLine+50)
	tests := []struct {
		name   string
		n      int
		writes []string
		want   []string
	}{
		{name: "NothingWrittenGivesNoLines", n: 3, writes: nil, want: nil},
		{name: "FewerLinesThanKeptAreAllKept", n: 3, writes: []string{"a\nb\n"}, want: []string{"a", "b"}},
		{name: "OnlyTheLastNLinesAreKept", n: 2, writes: []string{"1\n2\n3\n4\n"}, want: []string{"3", "4"}},
		{name: "LinesSplitAcrossWritesAreJoined", n: 3, writes: []string{"he", "llo\nwo", "rld\n"}, want: []string{"hello", "world"}},
		{name: "UnterminatedLastLineIsKept", n: 2, writes: []string{"a\nb\nc"}, want: []string{"b", "c"}},
		{name: "CarriageReturnsAreDropped", n: 2, writes: []string{"a\r\nb\r\n"}, want: []string{"a", "b"}},
		{name: "LongLinesAreClipped", n: 1, writes: []string{long + "\n"}, want: []string{strings.Repeat("x", maxTailLine) + "…"}},
		{name: "EmptyLinesCount", n: 2, writes: []string{"a\n\n\n"}, want: []string{"", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTailBuffer(tt.n)
			for _, w := range tt.writes {
				if n, err := tb.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if diff := cmp.Diff(tt.want, tb.Lines()); diff != "" {
				t.Errorf("Lines() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrefixWriterPrefixesEveryLine(t *testing.T) {
	var b strings.Builder
	pw := &PrefixWriter{W: &b, Prefix: "init-pre| "}
	for _, s := range []string{"one\ntw", "o\n", "three"} {
		pw.Write([]byte(s))
	}
	want := "init-pre| one\ninit-pre| two\ninit-pre| three"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
