package problem

import (
	"strings"
	"testing"
)

func TestListKeepsFirstPerKey(t *testing.T) {
	var l List
	l.Add("a", "first %d", 1)
	l.Add("a", "second")
	l.Add("b", "other")
	var m List
	m.Add("b", "dup")
	m.Add("c", "new")
	l.Merge(m)
	if len(l) != 3 || l[0].Msg != "first 1" || l[1].Msg != "other" || l[2].Key != "c" {
		t.Fatalf("got %v", l)
	}
	if List(nil).Err("x") != nil {
		t.Fatal("empty list must be no error")
	}
	got := l.Err("x").Error()
	if !strings.Contains(got, `instance "x": spec is invalid (3 problems):`) || !strings.Contains(got, "\n  - c: new") {
		t.Fatalf("Error() = %q", got)
	}
}
