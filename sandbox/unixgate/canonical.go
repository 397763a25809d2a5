package unixgate

import (
	"path/filepath"
	"slices"
)

// Canonical returns a copy of p whose Allow and OwnDirs entries also appear with their
// symlinks resolved (as the supervisor sees them now), because decisions compare against
// the real path of the pinned socket. Entries that do not exist yet are resolved as far as
// their longest existing ancestor: a database that starts later still matches. The entries
// as written are kept too, so a symlink replaced by a real directory later still matches.
func (p Policy) Canonical() Policy {
	q := p
	q.Allow = canonicalList(p.Allow)
	q.OwnDirs = canonicalList(p.OwnDirs)
	return q
}

func canonicalList(in []string) []string {
	var out []string
	for _, e := range in {
		clean := filepath.Clean(e)
		for _, c := range []string{clean, resolveExisting(clean)} {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// resolveExisting resolves symlinks in the longest existing ancestor of path and appends
// the rest unchanged.
func resolveExisting(path string) string {
	rest := ""
	for dir := path; ; dir = filepath.Dir(dir) {
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(resolved, rest)
		}
		if dir == "/" || dir == "." {
			return path
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}
