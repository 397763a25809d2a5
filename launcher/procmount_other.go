//go:build !linux

package launcher

import "errors"

func privateProc() error { return errors.New("private /proc needs Linux") }
