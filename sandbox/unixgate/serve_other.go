//go:build !linux

package unixgate

import (
	"context"
	"errors"
	"log/slog"
)

// Serve needs seccomp user notification, which only Linux has.
func Serve(ctx context.Context, notifFD int, pol Policy, log *slog.Logger) error {
	return errors.ErrUnsupported
}
