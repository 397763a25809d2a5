// Package exitcode is the launcher's exit statuses (sysexits(3), so they do
// not collide with the server's own, which run passes through) and the
// error wrapper that carries one, so that a package deep below the CLI can
// say "this is the operator's missing file", not just "an error".
package exitcode

import (
	"errors"
	"fmt"
)

// The statuses, documented in README.md.
const (
	OK          = 0
	Usage       = 64 // bad command line
	SpecInvalid = 65 // the spec failed validation (EX_DATAERR)
	NoInput     = 66 // spec, environmentFile, script or path missing (EX_NOINPUT)
	Unavailable = 69 // the kernel lacks a protection the plan requires (EX_UNAVAILABLE)
	Bug         = 70 // an invariant broke: a bug in ocnix (EX_SOFTWARE)
	OSErr       = 71 // a system call failed (EX_OSERR)
	TempFail    = 75 // lock busy or timeout; try again (EX_TEMPFAIL)
	Permission  = 77 // wrong user, or root needed (EX_NOPERM)
	Config      = 78 // environmentFile malformed (EX_CONFIG)
	InitScript  = 79 // an init script failed; the server must not start
)

// Error carries the exit code with the message.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With attaches code to err, unless err already carries one: the innermost,
// most specific code wins.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *Error
	if errors.As(err, &ee) {
		return err
	}
	return &Error{Code: code, Err: err}
}

// Errorf is fmt.Errorf with a code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Of returns the code err carries, if any.
func Of(err error) (int, bool) {
	var ee *Error
	if errors.As(err, &ee) {
		return ee.Code, true
	}
	return 0, false
}

// Bugf marks an invariant violation: a bug in ocnix, not the operator's fault.
func Bugf(format string, args ...any) error {
	return &Error{Code: Bug, Err: fmt.Errorf("bug in ocnix, please report it: "+format, args...)}
}
