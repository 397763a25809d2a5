//go:build !linux

package safefs

// oPath: other systems have no O_PATH; safefs only has to build there
// (check and explain run on macOS), root's reads happen on Linux.
const oPath = 0
