package sandbox

import "testing"

// TestSeccompFilterCompiles checks, without loading anything, that
// libseccomp accepts every rule of the plan on every ABI: names,
// errnos, operators and argument conditions.
func TestSeccompFilterCompiles(t *testing.T) {
	for _, abi := range []int{3, 7, 9} {
		p, err := Build(testInput(), caps(abi))
		if err != nil {
			t.Fatal(err)
		}
		c, err := compileSeccomp(p.Seccomp)
		if err != nil {
			t.Fatalf("ABI %d: %v", abi, err)
		}
		if c.Notify != (abi < 9) {
			t.Errorf("ABI %d: notify %v", abi, c.Notify)
		}
	}
}
