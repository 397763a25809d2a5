//go:build !linux

package pidinit

// Main does nothing: the sandbox is Linux-only.
func Main() {}

// InOwnNamespace is false off Linux.
func InOwnNamespace() bool { return false }
