package envfile

import "testing"

// FuzzParseEnvFile: any text parses or fails cleanly, and a parsed name is
// always a valid variable name.
func FuzzParseEnvFile(f *testing.F) {
	f.Add("A=1\nB='x'\"y\"\n# c\n")
	f.Add("A=\"unterminated\n")
	f.Fuzz(func(t *testing.T, in string) {
		vars, err := Parse(in)
		if err != nil {
			return
		}
		for _, v := range vars {
			if !NameRe.MatchString(v.Name) {
				t.Fatalf("invalid name accepted: %q", v.Name)
			}
		}
	})
}
