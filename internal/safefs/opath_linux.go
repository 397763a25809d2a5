package safefs

import "golang.org/x/sys/unix"

// oPath opens a path without reading it (O_PATH).
const oPath = unix.O_PATH
