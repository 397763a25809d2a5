package unixgate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAllowed(t *testing.T) {
	pol := Policy{
		Instance: "web",
		Allow:    []string{"/run/postgresql/.s.PGSQL.5432", "/run/redis/", "/srv/shared"},
		OwnDirs:  []string{"/srv/web", "/var/lib/opencode/instance-state/web"},
	}
	tests := []struct {
		name string
		path string
		want bool
	}{
		{name: "ExactSocketFileIsAllowed", path: "/run/postgresql/.s.PGSQL.5432", want: true},
		{name: "SiblingOfSocketFileIsDenied", path: "/run/postgresql/.s.PGSQL.5433", want: false},
		{name: "DirectoryEntryCoversChild", path: "/run/redis/redis.sock", want: true},
		{name: "DirectoryEntryCoversDeepChild", path: "/srv/shared/a/b/c.sock", want: true},
		{name: "DirectoryEntryWithTrailingSlashCoversChild", path: "/run/redis/x", want: true},
		{name: "EntryMatchesExactlyEvenIfADirectory", path: "/run/redis", want: true},
		{name: "PrefixWithoutSlashIsDenied", path: "/run/redis-evil/x.sock", want: false},
		{name: "PrefixOfSocketFileIsDenied", path: "/run/postgresql/.s.PGSQL.5432x", want: false},
		{name: "OwnDirCoversSocket", path: "/srv/web/tmp/app.sock", want: true},
		{name: "StateDirCoversSocket", path: "/var/lib/opencode/instance-state/web/s", want: true},
		{name: "OtherInstanceIsDenied", path: "/srv/webmail/app.sock", want: false},
		{name: "OwnDirItselfIsDenied", path: "/srv/web", want: false},
		{name: "UncleanPathIsDenied", path: "/srv/web/../other/x.sock", want: false},
		{name: "RelativePathIsDenied", path: "srv/web/x.sock", want: false},
		{name: "DeletedSuffixOutsideIsDenied", path: "/tmp/evil.sock (deleted)", want: false},
		{name: "EmptyIsDenied", path: "", want: false},
		{name: "UnrelatedIsDenied", path: "/var/run/docker.sock", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pol.Allowed(tt.path); got != tt.want {
				t.Errorf("Allowed(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestAllowedRootEntryCoversEverything(t *testing.T) {
	pol := Policy{Allow: []string{"/"}}
	got := []bool{pol.Allowed("/x.sock"), pol.Allowed("/a/b.sock"), pol.Allowed("/")}
	if diff := cmp.Diff([]bool{true, true, true}, got); diff != "" {
		t.Errorf("root entry (-want +got):\n%s", diff)
	}
}

func TestAllowedEmptyPolicyDeniesAll(t *testing.T) {
	if (Policy{}).Allowed("/run/x.sock") {
		t.Error("empty policy allowed /run/x.sock")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		pol     Policy
		wantErr string
	}{
		{name: "AbsolutePathsAreValid", pol: Policy{Allow: []string{"/run/x"}, OwnDirs: []string{"/srv"}}},
		{name: "RelativeAllowIsRejected", pol: Policy{Allow: []string{"run/x"}}, wantErr: `path "run/x": is not absolute`},
		{name: "RelativeOwnDirIsRejected", pol: Policy{OwnDirs: []string{"."}}, wantErr: `path ".": is not absolute`},
		{name: "NegativeMaxPendingIsRejected", pol: Policy{MaxPending: -1}, wantErr: "max pending -1: is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pol.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCanonicalResolvesSymlinkedAncestors(t *testing.T) {
	dir := t.TempDir()
	realDirPath := filepath.Join(dir, "real")
	if err := os.Mkdir(realDirPath, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(realDirPath, link); err != nil {
		t.Fatal(err)
	}
	realDir, err := filepath.EvalSymlinks(realDirPath)
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{
		Allow:   []string{link + "/pg/.s.PGSQL.5432", "/nonexistent-ocnix/x.sock"},
		OwnDirs: []string{link + "/"},
	}.Canonical()
	// The allow entry lies beneath an own directory, so it is not resolved
	// (the instance controls links there); the own directory itself is, and
	// covers the socket's real path.
	want := Policy{
		Allow: []string{
			link + "/pg/.s.PGSQL.5432",
			"/nonexistent-ocnix/x.sock",
		},
		OwnDirs: []string{link, realDir},
	}
	if diff := cmp.Diff(want, pol); diff != "" {
		t.Errorf("Canonical() (-want +got):\n%s", diff)
	}
	if !pol.Allowed(realDir + "/pg/.s.PGSQL.5432") {
		t.Error("canonical policy denies the real path of a symlinked entry")
	}
}

func TestStringNamesEveryEntry(t *testing.T) {
	s := Policy{Instance: "web", Allow: []string{"/run/a.sock"}, OwnDirs: []string{"/srv/web"}}.String()
	for _, want := range []string{`"web"`, "/run/a.sock", "/srv/web", "EACCES", "64 pending"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, want it to contain %q", s, want)
		}
	}
}

// TestCanonicalNeverFollowsInstanceLinks: links the instance planted in its
// own directories must not widen the allow-list when root resolves it.
func TestCanonicalNeverFollowsInstanceLinks(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(dir, "state")
	operator := filepath.Join(dir, "operator")
	victim := filepath.Join(dir, "victim")
	for _, d := range []string{own, operator, victim, filepath.Join(dir, "real")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustLink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	// Planted by the instance: a directory entry -> /, a socket entry -> victim.
	mustLink("/", filepath.Join(own, "sockets"))
	mustLink(filepath.Join(victim, "v.sock"), filepath.Join(own, "db.sock"))
	// Made by the operator outside the instance's dirs: followed.
	mustLink(filepath.Join(dir, "real"), filepath.Join(operator, "run"))
	// Operator link into the instance's dir, where the instance links on.
	mustLink(own, filepath.Join(operator, "into-own"))
	mustLink(victim, filepath.Join(own, "out"))
	// A nested own directory the instance replaced with a link to /.
	nested := filepath.Join(own, "cache")
	mustLink("/", nested)

	pol := Policy{
		Allow: []string{
			filepath.Join(own, "sockets"),
			filepath.Join(own, "db.sock"),
			filepath.Join(operator, "run", "pg.sock"),
			filepath.Join(operator, "into-own", "out", "v.sock"),
		},
		OwnDirs: []string{own, nested},
	}.Canonical()
	for _, bad := range []string{"/", filepath.Join(victim, "v.sock"), victim} {
		if slices.Contains(pol.Allow, bad) || slices.Contains(pol.OwnDirs, bad) {
			t.Errorf("canonical policy contains %s, reached through an instance-made link:\n%+v", bad, pol)
		}
	}
	if pol.Allowed(filepath.Join(victim, "v.sock")) || pol.Allowed("/run/docker.sock") {
		t.Errorf("canonical policy allows sockets behind instance-made links: %+v", pol)
	}
	realPG, _ := filepath.EvalSymlinks(filepath.Join(dir, "real"))
	if !pol.Allowed(filepath.Join(realPG, "pg.sock")) {
		t.Errorf("an operator-made link outside the instance's dirs is no longer followed: %+v", pol)
	}
}

func TestBindPolicy(t *testing.T) {
	b := &BindPolicy{Ports: []int{8080, 9000}}
	for port, want := range map[int]bool{0: true, 8080: true, 9000: true, 53: false, 8081: false} {
		if got := b.portAllowed(port); got != want {
			t.Errorf("portAllowed(%d) = %v, want %v", port, got, want)
		}
	}
	p := Policy{OwnDirs: []string{"/srv/p", "/var/lib/p/"}}
	for dir, want := range map[string]bool{"/srv/p": true, "/srv/p/sub": true, "/var/lib/p/tmp": true, "/var/lib/p": true, "/srv/pp": false, "/tmp": false, "/srv": false} {
		if got := p.mayCreateSocket(dir); got != want {
			t.Errorf("mayCreateSocket(%s) = %v, want %v", dir, got, want)
		}
	}
}
