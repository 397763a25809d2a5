package unixgate

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// DefaultMaxPending bounds in-flight on-behalf connects when Policy.MaxPending is 0.
const DefaultMaxPending = 64

// UnixConnectTimeout clamps how long one on-behalf unix connect may wait for room in a
// server's backlog. The kernel would wait forever; the supervisor must not.
const UnixConnectTimeout = 10 * time.Second

// Policy is what the gate allows for one instance.
//
// Invariants: every path is absolute. Paths are compared as the kernel reports them in
// /proc/self/fd, so an entry that goes through a symlink (/var/run on NixOS) only matches
// after [Policy.Canonical] resolved it.
type Policy struct {
	// Instance names the instance in log lines.
	Instance string
	// Allow lists socket files (exactly that socket) or directories (any socket beneath).
	Allow []string
	// OwnDirs are the instance's read-write paths; sockets beneath them are allowed. This
	// relies on the instance being unable to hard-link a foreign socket into them (Landlock's
	// refer right and fs.protected_hardlinks) or to bind-mount one there.
	OwnDirs []string
	// MaxPending bounds in-flight on-behalf connects; 0 means DefaultMaxPending.
	MaxPending int
	// Bind, when set, means bind(2) is gated too (the filter notifies it): the instance
	// shares the host's network namespace, whose abstract unix names and UDP ports host
	// clients use. Nil leaves bind alone (the filter does not send it).
	Bind *BindPolicy
}

// BindPolicy is what an instance in the host's network namespace may bind.
//
// Every bind is done on the caller's behalf with its credentials, never answered
// CONTINUE: the caller could swap the address or the descriptor between our check and the
// kernel's second read. That also means Landlock, which does not confine the supervisor,
// no longer sees these binds, so the rules below restate Landlock's: TCP ports, and now
// UDP ports too, only 0 (ephemeral) and Ports; socket files only in OwnDirs (Landlock's
// make_sock right); abstract names never.
type BindPolicy struct {
	// Ports are the TCP and UDP ports that may be bound besides 0.
	Ports []int
}

func (b *BindPolicy) portAllowed(port int) bool {
	if port == 0 {
		return true
	}
	for _, p := range b.Ports {
		if p == port {
			return true
		}
	}
	return false
}

// mayCreateSocket reports whether a socket file may be created in the directory whose
// real path is dir: only in the instance's own read-write paths.
func (p Policy) mayCreateSocket(dir string) bool {
	for _, d := range p.OwnDirs {
		if dir == filepath.Clean(d) || beneath(dir, d) {
			return true
		}
	}
	return false
}

// Validate reports entries that cannot be enforced as written.
func (p Policy) Validate() error {
	for _, list := range [][]string{p.Allow, p.OwnDirs} {
		for _, e := range list {
			if !filepath.IsAbs(e) {
				return fmt.Errorf("unixgate: path %q: is not absolute", e)
			}
		}
	}
	if p.MaxPending < 0 {
		return fmt.Errorf("unixgate: max pending %d: is negative", p.MaxPending)
	}
	return nil
}

// Allowed reports whether a connect to the socket whose real (symlink-free, absolute)
// path is realPath is allowed: an exact Allow entry, or beneath an Allow or OwnDirs entry.
// A socket file cannot have children, so one prefix rule covers file and directory entries.
// Allowed says nothing about the object's type: Serve checks S_IFSOCK on the pinned inode,
// so an exact match on a directory entry never reaches connect.
func (p Policy) Allowed(realPath string) bool {
	if !filepath.IsAbs(realPath) || filepath.Clean(realPath) != realPath {
		// readlink of a pinned fd always gives a clean absolute path; anything else
		// (an unreachable or deleted object) is not worth guessing about.
		return false
	}
	for _, e := range p.Allow {
		if realPath == filepath.Clean(e) || beneath(realPath, e) {
			return true
		}
	}
	for _, d := range p.OwnDirs {
		if beneath(realPath, d) {
			return true
		}
	}
	return false
}

// beneath reports whether path lies strictly under dir.
func beneath(path, dir string) bool {
	dir = filepath.Clean(dir)
	if dir == "/" {
		return path != "/"
	}
	return strings.HasPrefix(path, dir+"/")
}

// maxPending is MaxPending with the default applied.
func (p Policy) maxPending() int {
	if p.MaxPending == 0 {
		return DefaultMaxPending
	}
	return p.MaxPending
}

// String renders the policy for explain.
func (p Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "unix-socket gate (seccomp user notification) for instance %q:\n", p.Instance)
	if len(p.Allow) == 0 {
		b.WriteString("  allow: (none)\n")
	}
	for _, e := range p.Allow {
		fmt.Fprintf(&b, "  allow: %s (this socket, or any socket beneath if a directory)\n", e)
	}
	for _, d := range p.OwnDirs {
		fmt.Fprintf(&b, "  allow: sockets beneath own read-write path %s\n", d)
	}
	b.WriteString("  deny: every other pathname socket, missing paths and abstract sockets (EACCES)\n")
	fmt.Fprintf(&b, "  bound: %d pending on-behalf connects (EAGAIN beyond), unix connects wait at most %s\n",
		p.maxPending(), UnixConnectTimeout)
	return b.String()
}
