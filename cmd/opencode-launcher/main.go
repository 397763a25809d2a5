// Command opencode-launcher runs one sandboxed opencode server from an ocnix instance spec.
package main

import "github.com/ocnix/ocnix/launcher"

func main() {
	launcher.MainOS()
}
