package launcher

import (
	"errors"

	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/internal/exitcode"
)

// Exit codes (internal/exitcode), documented in README.md.
const (
	ExitOK          = exitcode.OK
	ExitUsage       = exitcode.Usage
	ExitSpecInvalid = exitcode.SpecInvalid
	ExitNoInput     = exitcode.NoInput
	ExitUnavailable = exitcode.Unavailable
	ExitBug         = exitcode.Bug
	ExitOSErr       = exitcode.OSErr
	ExitTempFail    = exitcode.TempFail
	ExitPermission  = exitcode.Permission
	ExitConfig      = exitcode.Config
	ExitInitScript  = exitcode.InitScript
)

var (
	withCode = exitcode.With
	errorf   = exitcode.Errorf
)

// ExitCode maps an error to the process exit status.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *childExit
	if errors.As(err, &ce) {
		return ce.code
	}
	if code, ok := exitcode.Of(err); ok {
		return code
	}
	var ps *Problems
	switch {
	case errors.As(err, &ps):
		return ExitSpecInvalid
	case errors.Is(err, ErrSpecSyntax):
		return ExitSpecInvalid
	case errors.Is(err, ErrSpecUnreadable):
		return ExitNoInput
	case errors.Is(err, envfile.ErrFile):
		return ExitConfig
	}
	return ExitOSErr
}
