//go:build !linux

package launcher

import "errors"

// accessOnThread needs per-thread credentials, which only Linux has; setup
// is Linux-only, this keeps the package building where explain runs.
func accessOnThread(path string, mode uint32, id identity) (err error, poisoned bool) {
	return errors.New("checking access as another user is only supported on Linux"), false
}
