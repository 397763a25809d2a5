package launcher

import (
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/childproc"
)

func TestStampDecision(t *testing.T) {
	const a, b = "aaaa", "bbbb"
	tests := []struct {
		name     string
		recorded string
		current  string
		force    bool
		wantRun  bool
	}{
		{name: "NoStampRuns", recorded: "", current: a, wantRun: true},
		{name: "SameDigestSkips", recorded: a, current: a, wantRun: false},
		{name: "ChangedDigestRuns", recorded: a, current: b, wantRun: true},
		{name: "RerunInitForcesSameDigest", recorded: a, current: a, force: true, wantRun: true},
		{name: "RerunInitWithoutStampRuns", recorded: "", current: a, force: true, wantRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, why := stampDecision(tt.recorded, tt.current, tt.force)
			if run != tt.wantRun {
				t.Errorf("stampDecision(%q, %q, %v) = %v (%s), want %v", tt.recorded, tt.current, tt.force, run, why, tt.wantRun)
			}
			if why == "" {
				t.Error("stampDecision gave no reason for the log")
			}
		})
	}
}

func TestScriptDigestCoversPhasePathAndContent(t *testing.T) {
	d := func(phase, path, content string) string {
		t.Helper()
		s, err := scriptDigest(phase, path, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := d("pre", "/s/a", "echo hi\n")
	if again := d("pre", "/s/a", "echo hi\n"); again != base {
		t.Errorf("digest is not stable: %s then %s", base, again)
	}
	for name, other := range map[string]string{
		"ContentChanged": d("pre", "/s/a", "echo ho\n"),
		"PathChanged":    d("pre", "/s/b", "echo hi\n"),
		"PhaseChanged":   d("post", "/s/a", "echo hi\n"),
		// The separator keeps path and content apart.
		"BoundaryMoved": d("pre", "/s/aecho", " hi\n"),
	} {
		if other == base {
			t.Errorf("%s: digest did not change", name)
		}
	}
	if parseStamp([]byte(base+"\n")) != base {
		t.Errorf("parseStamp does not read back what setup writes")
	}
}

func TestParseStampRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("a", 63), strings.Repeat("a", 65)} {
		if got := parseStamp([]byte(s)); got != "" {
			t.Errorf("parseStamp(%q) = %q, want empty (absent)", s, got)
		}
	}
}

func TestScriptErrorNamesStatusAndTail(t *testing.T) {
	e := &scriptError{
		script: InitScript{Phase: "pre", Key: "preInitScript", Path: "/s/pre"},
		result: childproc.Result{Status: 3},
		tail:   []string{"line a", "line b"},
	}
	msg := e.Error()
	for _, want := range []string{"preInitScript /s/pre exited with status 3", "line a", "line b"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(e.reason(), "line a") {
		t.Errorf("reason %q carries script output; it is stored where the instance can read it", e.reason())
	}
}
