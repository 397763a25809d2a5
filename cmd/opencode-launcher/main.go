// Command opencode-launcher runs one sandboxed opencode server from an ocnix instance spec.
package main

import (
	"github.com/ocnix/ocnix/launcher"
	"github.com/ocnix/ocnix/sandbox"
)

func main() {
	sandbox.ChildMain() // never returns in the re-exec'd sandbox child
	launcher.MainOS()
}
