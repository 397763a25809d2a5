package netpolicy

import (
	"fmt"
	"os"
)

// writeSysctl sets one sysctl in the calling thread's network namespace,
// skipping the write when the value is already right.
func writeSysctl(s Sysctl) error {
	if cur, err := os.ReadFile(s.path()); err == nil && string(trimNL(cur)) == s.Value {
		return nil
	}
	if err := os.WriteFile(s.path(), []byte(s.Value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", s.Key, s.Value, err)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
