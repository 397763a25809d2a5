package netpolicy

import "testing"

// TestSharedTableLowers: the peer guard's matches (uid sets, the SYN flag,
// the veth prefixes) lower to nftables expressions without a bug error.
func TestSharedTableLowers(t *testing.T) {
	tbl := SharedTable([]string{"eth0"}, []Listener{
		{Instance: "b", Port: 9000, UID: 1002},
		{Instance: "a", Port: 8787, UID: 1001},
	})
	if _, err := lower(tbl); err != nil {
		t.Errorf("lower: %v", err)
	}
}
