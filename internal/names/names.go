// Package names holds the one rule for an instance name. The name becomes a
// systemd unit fragment, a user name (opencode-<name>), a netns name, an nft
// table name, a log prefix and a path component, so every layer checks it the
// same way instead of each keeping a looser copy.
package names

import (
	"fmt"
	"regexp"
)

const (
	// UserPrefix prefixes the default user of an instance.
	UserPrefix = "opencode-"
	// MaxUser is the longest portable user name (useradd, systemd-sysusers).
	MaxUser = 32
	// MaxInstance keeps UserPrefix+name within MaxUser.
	MaxInstance = MaxUser - len(UserPrefix)
)

var instanceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// CheckInstance returns nil for a usable instance name, or why it is not,
// phrased to follow the key ("name: <msg>").
func CheckInstance(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is empty; give the instance a name")
	case !instanceRe.MatchString(name):
		return fmt.Errorf("%q is not a valid instance name; use lower-case letters, digits, '-' and '_', starting with a letter or digit", name)
	case len(name) > MaxInstance:
		return fmt.Errorf("%q is too long: the user %q must fit %d characters, so the name may have at most %d", name, UserPrefix+name, MaxUser, MaxInstance)
	}
	return nil
}
