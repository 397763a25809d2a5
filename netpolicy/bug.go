package netpolicy

import "fmt"

// bug marks an error that means netpolicy itself is wrong (an invariant
// of Build was violated), not the input or the host.
func bug(err error) error {
	return fmt.Errorf("netpolicy bug (please report): %w", err)
}
