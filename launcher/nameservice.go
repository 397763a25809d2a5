package launcher

import (
	"fmt"
	"path/filepath"
	"strings"
)

// nameServiceSockets are host services that resolve names (or do more on
// the host's network) for whoever connects. A process in an isolated
// instance that reaches one resolves with the host's network, outside its
// netns and egress filter: the answers leak in, and the names it asks for
// leak out (DNS exfiltration needs nothing else).
var nameServiceSockets = []struct{ path, what string }{
	{"/run/nscd/socket", "nscd, whose hosts cache resolves names with the host's DNS (NixOS runs it by default)"},
	{"/var/run/nscd/socket", "nscd, whose hosts cache resolves names with the host's DNS (NixOS runs it by default)"},
	{"/run/systemd/resolve/io.systemd.Resolve", "systemd-resolved's varlink API, which resolves names with the host's DNS"},
	{"/run/dbus/system_bus_socket", "the D-Bus system bus (org.freedesktop.resolve1 resolves names; other services act on the host's network)"},
	{"/var/run/dbus/system_bus_socket", "the D-Bus system bus (org.freedesktop.resolve1 resolves names; other services act on the host's network)"},
	{"/run/avahi-daemon/socket", "avahi, which resolves mDNS names on the host's LAN"},
}

// nameServiceWarnings flags allow-list entries that are, or are directories
// holding, a name-service socket. Only for isolated instances: without a
// netns the host's resolvers are the instance's anyway.
func nameServiceWarnings(allow []string) []string {
	var out []string
	for i, e := range allow {
		c := filepath.Clean(e)
		for _, ns := range nameServiceSockets {
			if ns.path == c || strings.HasPrefix(ns.path, strings.TrimSuffix(c, "/")+"/") {
				out = append(out, fmt.Sprintf("sandbox.unixSockets.allow[%d] %s lets the isolated instance reach %s at %s: name lookups through it bypass the instance's netns and egress filter; remove the entry unless that is intended", i, e, ns.what, ns.path))
			}
		}
	}
	return out
}
