package launcher

import (
	"errors"
	"fmt"
)

// Exit codes, documented in README.md. They follow sysexits(3) so that they do
// not collide with the server's own statuses, which run passes through.
const (
	ExitOK          = 0
	ExitUsage       = 64 // bad command line
	ExitSpecInvalid = 65 // the spec failed validation (EX_DATAERR)
	ExitNoInput     = 66 // spec, environmentFile, script or path missing (EX_NOINPUT)
	ExitUnavailable = 69 // the kernel lacks a protection the plan requires (EX_UNAVAILABLE)
	ExitBug         = 70 // an invariant broke: a bug in ocnix (EX_SOFTWARE)
	ExitOSErr       = 71 // a system call failed (EX_OSERR)
	ExitTempFail    = 75 // lock busy or timeout; try again (EX_TEMPFAIL)
	ExitPermission  = 77 // wrong user, or root needed (EX_NOPERM)
	ExitConfig      = 78 // environmentFile malformed (EX_CONFIG)
	ExitInitScript  = 79 // an init script failed; the server must not start
)

// exitError carries the exit code with the message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: code, err: err}
}

func errorf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error to the process exit status.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *childExit
	if errors.As(err, &ce) {
		return ce.code
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ps *Problems
	switch {
	case errors.As(err, &ps):
		return ExitSpecInvalid
	case errors.Is(err, ErrSpecSyntax):
		return ExitSpecInvalid
	case errors.Is(err, ErrSpecUnreadable):
		return ExitNoInput
	case errors.Is(err, ErrEnvFile):
		return ExitConfig
	}
	return ExitOSErr
}
