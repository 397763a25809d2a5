package unixgate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Canonical returns a copy of p whose Allow and OwnDirs entries also appear with their
// symlinks resolved (as the supervisor sees them now), because decisions compare against
// the real path of the pinned socket: an entry /var/run/postgresql must match the socket's
// real path /run/postgresql/…. Entries that do not exist yet are resolved as far as their
// longest existing ancestor: a database that starts later still matches. The entries as
// written are kept too, so a symlink replaced by a real directory later still matches.
//
// Only symlinks the instance cannot have made are followed. The supervisor resolves as
// root, and everything beneath OwnDirs is the instance's: a link planted there (an allow
// entry ~/run/db.sock -> /var/run/docker.sock, or a directory entry -> /) would otherwise
// widen the allow-list at the next start. So a resolution that touches a path beneath an
// own directory is dropped and only the entry as written is kept; sockets beneath own
// directories are allowed anyway.
func (p Policy) Canonical() Policy {
	q := p
	own := cleanList(p.OwnDirs)
	q.Allow = canonicalList(p.Allow, own)
	q.OwnDirs = canonicalList(p.OwnDirs, own)
	return q
}

func cleanList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, e := range in {
		out = append(out, filepath.Clean(e))
	}
	return out
}

func canonicalList(in, own []string) []string {
	var out []string
	for _, e := range in {
		clean := filepath.Clean(e)
		cands := []string{clean}
		// An own directory is trusted as a root of resolution only against the
		// other own directories: one nested in another is the instance's to swap.
		untrusted := slices.DeleteFunc(slices.Clone(own), func(d string) bool { return d == clean })
		if r, ok := resolveExisting(clean, untrusted); ok {
			cands = append(cands, r)
		}
		for _, c := range cands {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// resolveExisting resolves symlinks in the longest existing ancestor of path and appends
// the rest unchanged. It reports false when the walk touches a path beneath (or equal to)
// one of untrusted, where the instance may have planted the links.
func resolveExisting(path string, untrusted []string) (string, bool) {
	rest := ""
	for dir := path; ; dir = filepath.Dir(dir) {
		resolved, ok, exists := resolveTrusted(dir, untrusted)
		if !ok {
			return "", false
		}
		if exists {
			return filepath.Join(resolved, rest), true
		}
		if dir == "/" || dir == "." {
			return path, true
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// maxLinks bounds symlink following, as the kernel's 40.
const maxLinks = 40

// resolveTrusted walks p one component at a time, following symlinks like
// filepath.EvalSymlinks. ok is false as soon as a component lies beneath an
// untrusted directory; exists is false when a component is missing.
func resolveTrusted(p string, untrusted []string) (resolved string, ok, exists bool) {
	resolved = "/"
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		if beneathAny(next, untrusted) {
			return "", false, false
		}
		fi, err := os.Lstat(next)
		if err != nil {
			return "", true, false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", false, false
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", true, false
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, true, true
}

func beneathAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || d == "/" || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
