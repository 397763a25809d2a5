package launcher

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParse: any input either parses into a spec that re-validates, or fails
// with a syntax error or a Problems list that names keys; it never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalSpec))
	f.Add([]byte(`{"name":"x","directory":"/a","command":["/b"],"sandbox":{"unixSockets":{"allow":["/run/x"]}},"networkIsolation":{"enable":true,"outboundAllowCidrs":["10.0.0.0/8","fd00::/8"]}}`))
	f.Add([]byte(`{"name":"x","listen":{"port":1e99}}`))
	f.Add([]byte(`{"name":"x","directory":"/a","command":["/b"],"networkIsolation":{"enable":true,"outboundAllowDomains":["api.anthropic.com","*.github.com","registry.npmjs.org:443"],"nameservers":["127.0.0.53"]}}`))
	f.Add([]byte(`{"name":"x","directory":"/a","command":["/b"],"networkIsolation":{"outboundAllowDomains":["*.","a.*.b",":443","x.com:0","x.com:65536","-a.com","[::1]:53","\u0000.com"]}}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"environment":{"A":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSpec(data)
		if err != nil {
			var ps *Problems
			if !errors.Is(err, ErrSpecSyntax) && !errors.As(err, &ps) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if ps != nil && len(ps.List) == 0 {
				t.Fatal("Problems with no problem")
			}
			return
		}
		// A spec that passed must survive a round trip unchanged in meaning.
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseSpec(b); err != nil {
			t.Fatalf("valid spec does not re-parse: %v\n%s", err, b)
		}
	})
}
