//go:build !linux

package sandbox

import (
	"context"
	"log/slog"
)

// Run is Linux only; elsewhere it returns ErrUnsupported.
func Run(ctx context.Context, plan Plan, cmd Command, log *slog.Logger) (int, error) {
	return -1, ErrUnsupported
}
