//go:build linux

package probe

import (
	"strings"
	"testing"
)

func TestJoinRefusesADuplicateVerb(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `verb write registered twice`) {
			t.Errorf("join of two groups with write: recovered %v, want a panic naming write", r)
		}
	}()
	join(map[string]Verb{"write": nil}, map[string]Verb{"read": nil, "write": nil})
}

func TestEveryGroupIsInTheTable(t *testing.T) {
	n := 0
	for _, g := range groups() {
		n += len(g)
		for name := range g {
			if verbs[name] == nil {
				t.Errorf("verb %s is missing from the table", name)
			}
		}
	}
	if len(verbs) != n {
		t.Errorf("table has %d verbs, the groups %d", len(verbs), n)
	}
}
