//go:build !linux

package threadcred

import (
	"errors"
	"fmt"
)

// Setgroups is Linux-only: other kernels have no per-thread credentials.
func Setgroups(gids []int) error {
	return fmt.Errorf("setgroups: per-thread credentials: %w", errors.ErrUnsupported)
}

// Setresuid is Linux-only.
func Setresuid(r, e, s int) error {
	return fmt.Errorf("setresuid: per-thread credentials: %w", errors.ErrUnsupported)
}

// Setresgid is Linux-only.
func Setresgid(r, e, s int) error {
	return fmt.Errorf("setresgid: per-thread credentials: %w", errors.ErrUnsupported)
}

func accessOnThread(string, uint32, int, int, []int) (error, bool) {
	return fmt.Errorf("check access as another user: per-thread credentials: %w", errors.ErrUnsupported), false
}
