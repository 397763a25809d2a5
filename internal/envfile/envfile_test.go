package envfile

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"Plain", "A=1\nB=two words\n", map[string]string{"A": "1", "B": "two words"}},
		{"CommentsAndBlankLines", "# c\n; c\n\n  \nA=1\n", map[string]string{"A": "1"}},
		{"HashInsideValueIsLiteral", "A=x#y\n", map[string]string{"A": "x#y"}},
		{"WhitespaceAroundKeyAndBeforeValue", "  A  =   v  \n", map[string]string{"A": "v"}},
		{"DoubleQuotes", `A="a b \"c\" \$d \\e \n"` + "\n", map[string]string{"A": `a b "c" $d \e \n`}},
		{"SingleQuotesAreLiteral", `A='a \" $b'` + "\n", map[string]string{"A": `a \" $b`}},
		{"QuotesKeepWhitespace", `A="  x  "` + "\n", map[string]string{"A": "  x  "}},
		{"Concatenation", `A='x'"y"z` + "\n", map[string]string{"A": "xyz"}},
		{"EmptyValue", "A=\nB=\"\"\n", map[string]string{"A": "", "B": ""}},
		{"UnquotedBackslash", `A=a\ b\\c` + "\n", map[string]string{"A": `a b\c`}},
		{"LineContinuation", "A=one\\\ntwo\n", map[string]string{"A": "onetwo"}},
		{"MultiLineDoubleQuote", "A=\"one\ntwo\"\n", map[string]string{"A": "one\ntwo"}},
		{"NoTrailingNewline", "A=1", map[string]string{"A": "1"}},
		{"CRLF", "A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}},
		{"LaterWins", "A=1\nA=2\n", map[string]string{"A": "2"}},
		{"ValueWithEquals", "A=b=c\n", map[string]string{"A": "b=c"}},
		{"CommentContinuation", "# c \\\nB=hidden\nA=1\n", map[string]string{"A": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, v := range vars {
				got[v.Name] = v.Value
			}
			if d := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestParseEnvFileErrorsNameLineButNotValue(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"NoEquals", "A=1\nsk-SECRETVALUE\n", "line 2 has no '='"},
		{"Export", "export A=sk-SECRETVALUE\n", "'export'"},
		{"BadName", "1A=sk-SECRETVALUE\n", "line 1: the variable name is not valid"},
		{"UnterminatedDouble", "A=\"sk-SECRETVALUE\n", "never closed"},
		{"UnterminatedSingle", "A='sk-SECRETVALUE\n", "never closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRETVALUE") {
				t.Errorf("error leaks the value: %v", err)
			}
		})
	}
}
