package netpolicy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostFactsFromResolvConf(t *testing.T) {
	conf := []byte("# nameserver 1.1.1.1 in a comment\n; nameserver 2.2.2.2\nsearch example.org\nnameserver\t10.0.0.53\nnameserver\n  nameserver 127.0.0.53 # trailing\nnameserver nonsense\noptions edns0\n")
	got := HostFactsFromResolvConf(conf)
	want := HostFacts{Nameservers: []string{"10.0.0.53", "127.0.0.53", "nonsense"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := HostFactsFromResolvConf(nil); len(got.Nameservers) != 0 {
		t.Errorf("no file: %v", got)
	}
}
