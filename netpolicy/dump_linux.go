package netpolicy

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// dumpTries bounds how often a netlink dump is repeated when the kernel
// flags it interrupted.
const dumpTries = 10

// dump repeats a netlink dump (LinkList, RouteList, AddrList) that the
// kernel interrupted. A dump spans several messages; when links, addresses
// or routes change in between (NLM_F_DUMP_INTR), vishvananda/netlink returns
// ErrDumpInterrupted with a possibly inconsistent result. That is routine
// when several setups start at once (each adds a veth), and a partial list
// must never be trusted: it could miss the last instance's veth and switch
// forwarding off under it. So a fresh dump is taken, and only a dump that
// stays interrupted is an error.
func dump[T any](list func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpTries {
		v, err = list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("%w: still interrupted after %d tries, the host's links or routes keep changing", err, dumpTries)
}
