package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ocnix/ocnix/internal/problem"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// Problems is every problem found in a spec, by any layer (spec, sandbox,
// network), each naming the key. check prints them all at once so an
// operator fixes a spec in one round.
type Problems = problem.Error

// Problem is one invalid key.
type Problem = problem.Problem

// ErrSpecUnreadable marks a spec file that could not be read at all.
var ErrSpecUnreadable = errors.New("spec unreadable")

// ErrSpecSyntax marks a spec that is not a JSON object.
var ErrSpecSyntax = errors.New("not a valid spec")

// loadFile reads and validates the spec at path. Structural validation only:
// nothing on the host is consulted (check runs inside the Nix build sandbox).
func loadFile(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec %s cannot be read; pass the file the Nix module wrote: %w (%w)", path, err, ErrSpecUnreadable)
	}
	s, err := parseSpec(data)
	if errors.Is(err, ErrSpecSyntax) {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	return s, err
}

// maxSpecSize bounds what Parse accepts; a real spec is a few KiB.
const maxSpecSize = 4 << 20

// parseSpec decodes and validates a spec. On failure it returns *Problems listing
// every problem found, or a syntax error with its position.
func parseSpec(data []byte) (*Spec, error) {
	if len(data) > maxSpecSize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrSpecSyntax, len(data), maxSpecSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: not valid JSON: %s; regenerate it with the Nix module or fix it by hand", ErrSpecSyntax, describeJSONErr(data, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: not valid JSON: trailing data after the top-level object", ErrSpecSyntax)
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: the top level is %s, want an object", ErrSpecSyntax, jsonType(raw))
	}
	ps := &Problems{}
	if n, ok := obj["name"].(string); ok {
		ps.Instance = n
	}
	s := decodeSpec(obj, ps)
	s.applyDefaults()
	s.validate(ps)
	// The layers below check what they will enforce, keyed in the spec's
	// terms; a key the spec already faulted keeps the spec's message.
	if len(s.Command) > 0 {
		ps.List.Merge(sandbox.Check(sandboxInput(s, "")))
	}
	ps.List.Merge(netpolicy.Check(netInput(s)))
	if len(ps.List) > 0 {
		return nil, ps
	}
	return s, nil
}

func describeJSONErr(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Sprintf("line %d column %d: %v", line, col, se)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the file is empty or ends early"
	}
	return err.Error()
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// obj walks one JSON object, recording wrong types and unknown keys.
type obj struct {
	prefix string
	m      map[string]any
	seen   map[string]bool
	ps     *Problems
}

func newObj(prefix string, m map[string]any, ps *Problems) *obj {
	return &obj{prefix: prefix, m: m, seen: map[string]bool{}, ps: ps}
}

func (o *obj) key(k string) string {
	if o.prefix == "" {
		return k
	}
	return o.prefix + "." + k
}

// get returns the value for k; absent and null are both "not set".
func (o *obj) get(k string, required bool) (any, bool) {
	o.seen[k] = true
	v, ok := o.m[k]
	if !ok || v == nil {
		if required {
			o.ps.List.Add(o.key(k), "is required but missing; set it in the spec (the Nix option of the same name)")
		}
		return nil, false
	}
	return v, true
}

func (o *obj) wrong(k string, v any, want string) {
	o.ps.List.Add(o.key(k), "is %s, want %s", jsonType(v), want)
}

func (o *obj) str(k string, required bool) string {
	v, ok := o.get(k, required)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		o.wrong(k, v, "a string")
	}
	return s
}

func (o *obj) boolean(k string) bool {
	v, ok := o.get(k, false)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		o.wrong(k, v, "true or false")
	}
	return b
}

// integer returns -1 when absent so that callers can tell "unset" from 0.
func (o *obj) integer(k string, required bool) int {
	v, ok := o.get(k, required)
	if !ok {
		return -1
	}
	return o.toInt(o.key(k), v)
}

func (o *obj) toInt(key string, v any) int {
	n, ok := v.(json.Number)
	if !ok {
		o.ps.List.Add(key, "is %s, want a whole number", jsonType(v))
		return 0
	}
	i, err := n.Int64()
	if err != nil || i < -1<<31 || i > 1<<31-1 {
		o.ps.List.Add(key, "is %s, want a whole number", n.String())
		return 0
	}
	return int(i)
}

func (o *obj) strList(k string) []string {
	v, ok := o.get(k, false)
	if !ok {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		o.wrong(k, v, "a list of strings")
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			o.ps.List.Add(fmt.Sprintf("%s[%d]", o.key(k), i), "is %s, want a string", jsonType(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (o *obj) intList(k string) []int {
	v, ok := o.get(k, false)
	if !ok {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		o.wrong(k, v, "a list of numbers")
		return nil
	}
	out := make([]int, 0, len(arr))
	for i, e := range arr {
		out = append(out, o.toInt(fmt.Sprintf("%s[%d]", o.key(k), i), e))
	}
	return out
}

func (o *obj) child(k string) *obj {
	v, ok := o.get(k, false)
	if !ok {
		return newObj(o.key(k), map[string]any{}, o.ps)
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.wrong(k, v, "an object")
		m = map[string]any{}
	}
	return newObj(o.key(k), m, o.ps)
}

func (o *obj) rawObject(k string) map[string]any {
	v, ok := o.get(k, false)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.wrong(k, v, "an object")
	}
	return m
}

// done reports keys that the schema does not know, sorted for stable output.
func (o *obj) done() {
	var unknown []string
	for k := range o.m {
		if !o.seen[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		o.ps.List.Add(o.key(k), "is not a known key; remove it or fix its spelling (unknown keys are refused so that a typo cannot weaken the sandbox)")
	}
}

func decodeSpec(m map[string]any, ps *Problems) *Spec {
	o := newObj("", m, ps)
	s := &Spec{
		Name:            o.str("name", true),
		User:            o.str("user", false),
		Group:           o.str("group", false),
		Directory:       o.str("directory", true),
		StateDir:        o.str("stateDir", false),
		EnvironmentFile: o.str("environmentFile", false),
		Path:            o.strList("path"),
		LogLevel:        o.str("logLevel", false),
		Model:           o.str("model", false),
		Provider:        o.str("provider", false),
		ExtraArgs:       o.strList("extraArgs"),
		PreInitScript:   o.str("preInitScript", false),
		PostInitScript:  o.str("postInitScript", false),
		Command:         o.strList("command"),
	}
	if _, ok := m["command"]; !ok || m["command"] == nil {
		ps.List.Add("command", "is required but missing; set it to the opencode executable, e.g. [\"/nix/store/…-opencode/bin/opencode\"]")
	}
	s.InitScriptTimeout = o.integer("initScriptTimeout", false)

	l := o.child("listen")
	s.Listen = Listen{Address: l.str("address", false), Port: l.integer("port", false)}
	l.done()

	if env := o.rawObject("environment"); env != nil {
		s.Environment = make(map[string]string, len(env))
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, ok := env[k].(string)
			if !ok {
				ps.List.Add("environment."+k, "is %s, want a string", jsonType(env[k]))
				continue
			}
			s.Environment[k] = v
		}
	}

	sb := o.child("sandbox")
	s.Sandbox.ReadWritePaths = sb.strList("readWritePaths")
	s.Sandbox.ReadOnlyPaths = sb.strList("readOnlyPaths")
	s.Sandbox.AllowBindPorts = sb.intList("allowBindPorts")
	us := sb.child("unixSockets")
	s.Sandbox.UnixSockets.Allow = us.strList("allow")
	us.done()
	sb.done()

	ni := o.child("networkIsolation")
	s.NetworkIsolation = NetworkSpec{
		Enable:               ni.boolean("enable"),
		OutboundAllowCidrs:   ni.strList("outboundAllowCidrs"),
		Subnet:               ni.str("subnet", false),
		Nameservers:          ni.strList("nameservers"),
		OutboundAllowDomains: ni.strList("outboundAllowDomains"),
	}
	ni.done()

	s.OpencodeConfig = o.rawObject("opencodeConfig")
	o.done()
	return s
}
