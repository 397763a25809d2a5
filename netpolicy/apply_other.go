//go:build !linux

package netpolicy

import "context"

// Ensure is only implemented on Linux.
func Ensure(p Plan) error { return unsupported(p) }

// Teardown is only implemented on Linux.
func Teardown(p Plan) error { return unsupported(p) }

// Enter is only implemented on Linux.
func Enter(p Plan) error { return unsupported(p) }

// Verify is only implemented on Linux; it fails closed elsewhere.
func Verify(p Plan) error { return unsupported(p) }

// Counters is only implemented on Linux.
func Counters(p Plan) (map[string]Counter, error) { return nil, unsupported(p) }

func unsupported(p Plan) error {
	if !p.Enable {
		return nil
	}
	return ErrUnsupported
}

// Diagnose is only implemented on Linux.
func Diagnose(p Plan) []string { return nil }

// VerifyFilter is only implemented on Linux; it fails closed elsewhere.
func VerifyFilter(p Plan) error { return unsupported(p) }

// DNSEntries is only implemented on Linux.
func DNSEntries(p Plan) ([]DNSEntry, error) {
	if p.DNS == nil {
		return nil, nil
	}
	return nil, ErrUnsupported
}

// RunResolver is only implemented on Linux.
func RunResolver(ctx context.Context, p Plan, cfg ResolverConfig, ready func()) error {
	return ErrUnsupported
}

// ProbeResolverHere is only implemented on Linux.
func ProbeResolverHere(p Plan) error { return ProbeResolver(p) }

// ProbeResolver is only implemented on Linux.
func ProbeResolver(p Plan) error {
	if p.DNS == nil {
		return nil
	}
	return ErrUnsupported
}

// EnsureShared is only implemented on Linux.
func EnsureShared(p Plan) error {
	if p.Listener == nil {
		return nil
	}
	return ErrUnsupported
}

// VerifyPeerGuard is only implemented on Linux; it fails closed elsewhere.
func VerifyPeerGuard(p Plan) error {
	if p.Listener == nil {
		return nil
	}
	return ErrUnsupported
}

// SharedUIDWarnings is only implemented on Linux.
func SharedUIDWarnings(instance string) []string { return nil }
