package netpolicy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDomain(t *testing.T) {
	ok := []struct {
		in   string
		want DomainRule
	}{
		{"api.anthropic.com", DomainRule{Name: "api.anthropic.com", Ports: []uint16{80, 443}}},
		{"API.Anthropic.COM.", DomainRule{Name: "api.anthropic.com", Ports: []uint16{80, 443}}},
		{"*.github.com", DomainRule{Name: "github.com", Wildcard: true, Ports: []uint16{80, 443}}},
		{"registry.npmjs.org:443", DomainRule{Name: "registry.npmjs.org", Ports: []uint16{443}}},
		{"*.github.com:22", DomainRule{Name: "github.com", Wildcard: true, Ports: []uint16{22}}},
		{"_acme.example.org", DomainRule{Name: "_acme.example.org", Ports: []uint16{80, 443}}},
		{"xn--bcher-kva.example", DomainRule{Name: "xn--bcher-kva.example", Ports: []uint16{80, 443}}},
	}
	for _, tt := range ok {
		got, err := ParseDomain(tt.in)
		if err != nil {
			t.Errorf("ParseDomain(%q) = %v", tt.in, err)
			continue
		}
		tt.want.Entry = tt.in
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("ParseDomain(%q) (-want +got):\n%s", tt.in, d)
		}
	}
	bad := []struct{ in, want string }{
		{"", "is empty"},
		{"https://api.anthropic.com", "URL"},
		{"api.anthropic.com/v1", "URL"},
		{"10.0.0.1", "outboundAllowCidrs"},
		{"[::1]", "outboundAllowCidrs"},
		{"localhost", "no dot"},
		{"foo.localhost", "loopback"},
		{"*.com", "top-level domain"},
		{"*", "only allowed as the whole first label"},
		{"*.", "no host name"},
		{"a.*.com", "only allowed as the whole first label"},
		{"*foo.com", "only allowed as the whole first label"},
		{"**.foo.com", "only allowed as the whole first label"},
		{"foo.com:0", "port"},
		{"foo.com:65536", "port"},
		{"foo.com:", "port"},
		{"foo.com:http", "port"},
		{"foo.com:1:2", "more than one ':'"},
		{"foo..com", "empty label"},
		{".foo.com", "empty label"},
		{"-foo.com", "starts or ends with '-'"},
		{"foo bar.com", "space"},
		{"föö.com", "xn--"},
		{"foo.123", "starts with a digit"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "longer than 253"},
	}
	for _, tt := range bad {
		_, err := ParseDomain(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDomain(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestParseDomainsMergesPorts(t *testing.T) {
	rules, err := ParseDomains([]string{"a.example.com:22", "*.example.com", "A.example.com", "b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, fmt.Sprint(r, " ", r.Ports))
	}
	want := []string{"a.example.com [22 80 443]", "*.example.com [80 443]", "b.example.com [80 443]"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := ParseDomains([]string{"ok.example.com", "bad..example.com"}); err == nil || !strings.HasPrefix(err.Error(), "[1]: ") {
		t.Errorf("error = %v, want it to name index [1]", err)
	}
}

func TestMatchDomains(t *testing.T) {
	rules, err := ParseDomains([]string{"api.anthropic.com", "*.github.com", "github.com:22", "*.npmjs.org:443"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []uint16
	}{
		{"api.anthropic.com", []uint16{80, 443}},
		{"anthropic.com", nil},
		{"xapi.anthropic.com", nil},
		{"evil-api.anthropic.com.attacker.test", nil},
		{"api.github.com", []uint16{80, 443}},
		{"a.b.github.com", []uint16{80, 443}},
		{"github.com", []uint16{22}},
		{"notgithub.com", nil},
		{"registry.npmjs.org", []uint16{443}},
		{"npmjs.org", nil},
		{"API.GitHub.COM.", []uint16{80, 443}},
		// One label "x.github" under "com", as miekg/dns presents it: a
		// text suffix test saw ".github.com" at its end.
		{`x\.github.com`, nil},
		{`api\.anthropic.com`, nil},
		{`a\046github.com`, nil},
		{`x\000.github.com`, nil},
		{`x\ y.github.com`, nil},
		{"x y.github.com", nil},
		{"a..github.com", nil},
		{".github.com", nil},
	}
	for _, tt := range tests {
		if got := MatchDomains(rules, tt.name); !cmp.Equal(tt.want, got) {
			t.Errorf("MatchDomains(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMatchEntryNameOfATruncatedComment(t *testing.T) {
	rules, err := ParseDomains([]string{"*.wild.test:7001", "long.test"})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 60) + "." + strings.Repeat("y", 60) + "." + strings.Repeat("z", 50) + ".wild.test"
	tests := []struct {
		name, stored string
		want         []uint16
	}{
		{"WholeNameUnderWildcard", "a.wild.test", []uint16{7001}},
		{"TruncatedNameUnderWildcard", elementComment(long), []uint16{7001}},
		{"TruncatedNameWithEscapedDot", "~xx" + `\.wild.test`, nil},
		{"TruncatedNameElsewhere", elementComment(strings.Repeat("q", 130) + ".long.test"), nil},
		{"EscapedDot", `x\.wild.test`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchEntryName(rules, tt.stored); !cmp.Equal(tt.want, got) {
				t.Errorf("matchEntryName(%q) = %v, want %v", tt.stored, got, tt.want)
			}
		})
	}
}

// FuzzParseDomain: any entry is either refused or gives a rule whose
// canonical spelling parses to the same rule and matches what it names.
func FuzzParseDomain(f *testing.F) {
	for _, s := range []string{"api.anthropic.com", "*.github.com", "registry.npmjs.org:443", "*.", "a.*.b", ":443", "x.com:0", "[::1]:53", "A.B.C.", "_x.y.z:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDomain(s)
		if err != nil {
			return
		}
		if len(r.Ports) == 0 || r.Name == "" || strings.ContainsAny(r.Name, "*:") {
			t.Fatalf("ParseDomain(%q) = %+v", s, r)
		}
		again, err := ParseDomain(fmt.Sprintf("%s:%d", r, r.Ports[0]))
		if err != nil || again.Name != r.Name || again.Wildcard != r.Wildcard {
			t.Fatalf("canonical form of %q does not re-parse: %+v, %v", s, again, err)
		}
		probe := r.Name
		if r.Wildcard {
			probe = "x." + r.Name
			if r.Matches(r.Name) {
				t.Fatalf("%q matches its own suffix %q", s, r.Name)
			}
		}
		if !r.Matches(probe) {
			t.Fatalf("%q does not match %q", s, probe)
		}
	})
}
