package netpolicy

import "errors"

// Counter is the packet and byte count of one rule.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ErrNotInNetns means the process is not in the instance's network
// namespace. Callers refuse to start the server: running it in the host
// namespace would bypass the egress filter entirely.
var ErrNotInNetns = errors.New("not in the instance network namespace")
