package launcher

import (
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/childproc"
)

func TestStampDecision(t *testing.T) {
	a, b := stamp{Digest: "aaaa", State: "s1"}, stamp{Digest: "bbbb", State: "s1"}
	otherState := stamp{Digest: "aaaa", State: "s2"}
	oldRelease := stamp{Digest: "aaaa"} // a stamp without a state line
	tests := []struct {
		name     string
		recorded stamp
		current  stamp
		force    bool
		wantRun  bool
	}{
		{name: "NoStampRuns", recorded: stamp{}, current: a, wantRun: true},
		{name: "SameDigestSameStateDirSkips", recorded: a, current: a, wantRun: false},
		{name: "ChangedDigestRuns", recorded: a, current: b, wantRun: true},
		{name: "RecreatedStateDirRuns", recorded: a, current: otherState, wantRun: true},
		{name: "StampWithoutStateDirRuns", recorded: oldRelease, current: a, wantRun: true},
		{name: "RerunInitForcesSameDigest", recorded: a, current: a, force: true, wantRun: true},
		{name: "RerunInitWithoutStampRuns", recorded: stamp{}, current: a, force: true, wantRun: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, why := stampDecision(tt.recorded, tt.current, tt.force)
			if run != tt.wantRun {
				t.Errorf("stampDecision(%+v, %+v, %v) = %v (%s), want %v", tt.recorded, tt.current, tt.force, run, why, tt.wantRun)
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
	id, err := newStateID()
	if err != nil {
		t.Fatal(err)
	}
	want := stamp{Digest: base, State: id}
	if got := parseStamp([]byte(want.String())); got != want {
		t.Errorf("parseStamp(%q) = %+v, does not read back what setup writes", want.String(), got)
	}
	// A stamp of the release before the state id: the digest, no state.
	if got := parseStamp([]byte(base + "\n")); got != (stamp{Digest: base}) {
		t.Errorf("parseStamp of an old stamp = %+v, want the digest without a state", got)
	}
}

func TestParseStampRejectsMalformed(t *testing.T) {
	d := strings.Repeat("a", 64)
	for _, s := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("a", 63), strings.Repeat("a", 65), d + "\nstate x\nmore\n"} {
		if got := parseStamp([]byte(s)); got != (stamp{}) {
			t.Errorf("parseStamp(%q) = %+v, want empty (absent)", s, got)
		}
	}
	// A malformed state line keeps the digest but names no stateDir, so the script runs.
	if got := parseStamp([]byte(d + "\nstate zz\n")); got.State != "" {
		t.Errorf("parseStamp with a bad state id = %+v, want no state", got)
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
