package names

import (
	"strings"
	"testing"
)

func TestCheckInstance(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"my-project_2", true},
		{"0abc", true},
		{strings.Repeat("a", MaxInstance), true},
		{strings.Repeat("a", MaxInstance+1), false},
		{"", false},
		{"-a", false},
		{"_a", false},
		{"A", false},
		{"a.b", false},
		{"a/b", false},
		{"a b", false},
		{"ä", false},
	} {
		err := CheckInstance(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckInstance(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
