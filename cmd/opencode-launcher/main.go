// Command opencode-launcher runs one sandboxed opencode server from an ocnix instance spec.
package main

import (
	"runtime"

	"github.com/ocnix/ocnix/internal/pidinit"
	"github.com/ocnix/ocnix/launcher"
)

// Goroutines that switch a thread's namespaces (netpolicy's inNetns and
// ensureNetns) lock it and let it end with them. Go cannot end the main
// thread and wedges it instead, so a switch that landed there left the
// process's main thread, the one /proc/<pid>/ns/* and every tool read,
// in an instance's network namespace (seen with the dns resolver). Main
// keeps the main thread to itself.
func init() { runtime.LockOSThread() }

func main() {
	// As pid 1 of a PID namespace (systemd PrivatePIDs=) this process stays a small
	// init and runs the launcher as its child; see internal/pidinit.
	pidinit.Main()
	launcher.MainOS()
}
