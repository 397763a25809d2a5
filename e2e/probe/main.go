//go:build linux

// Command probe is the tests' probe program (internal/testkit/probe): it tries
// one thing from inside the sandbox and prints the result as a single line,
// "ok" (with an optional detail) or the errno's name. The e2e tests and the
// systemd tier build it from here.
package main

import (
	"os"

	"github.com/ocnix/ocnix/internal/testkit/probe"
)

func main() {
	os.Exit(probe.Main(os.Args[1:], probe.Print))
}
