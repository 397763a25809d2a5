//go:build !linux

package sandbox

import (
	"io/fs"
	"os"
)

// DetectCaps reports no Landlock and no seccomp outside Linux, so
// Build explains why the sandbox cannot run here.
func DetectCaps() Caps {
	fsys := os.DirFS("/").(fs.StatFS)
	return Caps{Layout: detectLayout(fsys), PtraceScope: NoYama, FS: fsys}
}
