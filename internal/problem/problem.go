// Package problem is the one shape in which every layer (spec, sandbox,
// network) reports what is wrong with its input: a key naming the spec's
// field and a message. check merges them so that an operator sees every
// problem of a spec in one pass, in one format.
package problem

import (
	"fmt"
	"strings"
)

// Problem is one invalid key. Key uses the spec's JSON spelling
// ("sandbox.readWritePaths[2]"); a layer below the spec reports the key of
// the spec field its input came from.
type Problem struct {
	Key string `json:"key"`
	Msg string `json:"message"`
}

func (p Problem) String() string { return p.Key + ": " + p.Msg }

// List collects problems. A key that already has one keeps only the first,
// so that a wrong type does not also report as "empty" or "missing" later.
type List []Problem

// Add records a problem for key.
func (l *List) Add(key, format string, args ...any) {
	if l.Has(key) {
		return
	}
	*l = append(*l, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Has reports whether key already has a problem.
func (l List) Has(key string) bool {
	for _, p := range l {
		if p.Key == key {
			return true
		}
	}
	return false
}

// Merge appends other's problems, keeping the first per key.
func (l *List) Merge(other List) {
	for _, p := range other {
		if !l.Has(p.Key) {
			*l = append(*l, p)
		}
	}
}

// Err returns the list as an error naming the instance, or nil when empty.
func (l List) Err(instance string) error {
	if len(l) == 0 {
		return nil
	}
	return &Error{Instance: instance, List: l}
}

// Error is a non-empty list of problems of one instance.
type Error struct {
	Instance string
	List     List
}

func (e *Error) Error() string {
	name := e.Instance
	if name == "" {
		name = "?"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "instance %q: spec is invalid (%d problem", name, len(e.List))
	if len(e.List) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, p := range e.List {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}
