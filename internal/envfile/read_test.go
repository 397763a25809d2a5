package envfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/testkit"
)

// otherUID stands for the instance user: a uid that is not root. Files are
// chowned to it by number; no account is needed for that.
const otherUID = 65534

const rootOnlyMarker = "root-only-marker-5d1e"

// readBounded runs Read with a deadline: a read that follows a planted FIFO
// never returns, and the test must fail, not hang.
func readBounded(t *testing.T, path string) ([]Var, error) {
	t.Helper()
	type result struct {
		vars []Var
		err  error
	}
	done := make(chan result, 1)
	go func() { v, err := Read(path); done <- result{v, err} }()
	select {
	case r := <-done:
		return r.vars, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("Read(%s) did not return within 5s: root was made to wait on what the path points to", path)
		return nil, nil
	}
}

func mkdir(t *testing.T, p string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(p, uint32(mode)); err != nil { // os.Chmod drops 0o1000
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string, uid int) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestReadAsRootFollowsNothingTheInstanceControls: root reads
// environmentFile for the instance, so whatever a non-root user could put
// at its path (a symlink to a root-only file, a FIFO, a device) must be
// refused, and a file only root can replace must load. Each case builds
// its tree in a fresh root-owned temp dir.
func TestReadAsRootFollowsNothingTheInstanceControls(t *testing.T) {
	testkit.RequireRoot(t, "chowns files to another uid and reads them as root", "sudo -E go test ./internal/envfile/")
	tests := []struct {
		name string
		// build makes the tree below base and returns environmentFile.
		build   func(t *testing.T, base, secret string) string
		wantErr string // "" means it loads API=ok
	}{
		{
			name: "RegularFileInRootOwnedDirLoads",
			build: func(t *testing.T, base, _ string) string {
				mkdir(t, filepath.Join(base, "etc"), 0o755, 0)
				write(t, filepath.Join(base, "etc", "app.env"), "API=ok\n", 0o600, 0)
				return filepath.Join(base, "etc", "app.env")
			},
		},
		{
			name: "FileOwnedByTheInstanceInRootOwnedDirLoads",
			build: func(t *testing.T, base, _ string) string {
				mkdir(t, filepath.Join(base, "etc"), 0o755, 0)
				write(t, filepath.Join(base, "etc", "app.env"), "API=ok\n", 0o600, otherUID)
				return filepath.Join(base, "etc", "app.env")
			},
		},
		{
			// sops-nix: /run/secrets -> /run/secrets.d/1, made by root.
			name: "RootsRelativeLinkInRootOwnedDirIsFollowed",
			build: func(t *testing.T, base, _ string) string {
				mkdir(t, filepath.Join(base, "run", "secrets.d", "1"), 0o755, 0)
				write(t, filepath.Join(base, "run", "secrets.d", "1", "app.env"), "API=ok\n", 0o600, 0)
				symlink(t, "secrets.d/1", filepath.Join(base, "run", "secrets"), 0)
				symlink(t, "../secrets/app.env", filepath.Join(base, "run", "secrets.d", "app.env"), 0)
				return filepath.Join(base, "run", "secrets.d", "app.env")
			},
		},
		{
			// The hole: environmentFile = directory/.env, swapped by the
			// instance for a link to a root-only file.
			name: "SymlinkSwappedInInstanceOwnedDirIsRefused",
			build: func(t *testing.T, base, secret string) string {
				proj := filepath.Join(base, "project")
				mkdir(t, proj, 0o750, otherUID)
				symlink(t, secret, filepath.Join(proj, ".env"), otherUID)
				return filepath.Join(proj, ".env")
			},
			wantErr: "owned by uid 65534",
		},
		{
			name: "SymlinkBelowAnInstanceOwnedAncestorIsRefused",
			build: func(t *testing.T, base, secret string) string {
				proj := filepath.Join(base, "project")
				mkdir(t, proj, 0o755, otherUID)
				mkdir(t, filepath.Join(proj, "conf"), 0o755, 0)
				symlink(t, secret, filepath.Join(proj, "conf", ".env"), 0)
				return filepath.Join(proj, "conf", ".env")
			},
			wantErr: "owned by uid 65534",
		},
		{
			name: "RegularFileInInstanceOwnedDirIsRefused",
			build: func(t *testing.T, base, _ string) string {
				proj := filepath.Join(base, "project")
				mkdir(t, proj, 0o750, otherUID)
				write(t, filepath.Join(proj, ".env"), "API=ok\n", 0o600, otherUID)
				return filepath.Join(proj, ".env")
			},
			wantErr: "owned by uid 65534",
		},
		{
			name: "UserLinkInStickyDirIsRefused",
			build: func(t *testing.T, base, secret string) string {
				mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
				symlink(t, secret, filepath.Join(base, "tmp", "app.env"), otherUID)
				return filepath.Join(base, "tmp", "app.env")
			},
			wantErr: "symlink owned by uid 65534",
		},
		{
			name: "UserFileInStickyDirIsRefused",
			build: func(t *testing.T, base, _ string) string {
				mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
				write(t, filepath.Join(base, "tmp", "app.env"), "API=ok\n", 0o600, otherUID)
				return filepath.Join(base, "tmp", "app.env")
			},
			wantErr: "in the shared directory",
		},
		{
			name: "GroupWritableParentIsRefused",
			build: func(t *testing.T, base, _ string) string {
				mkdir(t, filepath.Join(base, "grp"), 0o775, 0)
				write(t, filepath.Join(base, "grp", "app.env"), "API=ok\n", 0o600, 0)
				return filepath.Join(base, "grp", "app.env")
			},
			wantErr: "writable by group or others",
		},
		{
			name: "FIFOIsRefusedWithoutBlocking",
			build: func(t *testing.T, base, _ string) string {
				p := filepath.Join(base, "app.env")
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			},
			wantErr: "is a FIFO, not a regular file",
		},
		{
			name: "LinkToDevZeroIsRefusedWithoutReading",
			build: func(t *testing.T, base, _ string) string {
				symlink(t, "/dev/zero", filepath.Join(base, "app.env"), 0)
				return filepath.Join(base, "app.env")
			},
			wantErr: "is a character device, not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir() // root's, 0700, in sticky /tmp
			mkdir(t, filepath.Join(base, "root-only"), 0o700, 0)
			secret := filepath.Join(base, "root-only", "secret")
			write(t, secret, "STOLEN="+rootOnlyMarker+"\n", 0o600, 0)
			path := tt.build(t, base, secret)
			vars, err := readBounded(t, path)
			for _, v := range vars {
				if strings.Contains(v.Value, rootOnlyMarker) {
					t.Fatalf("Read(%s) loaded the root-only file: %s=%s", path, v.Name, v.Value)
				}
			}
			if tt.wantErr == "" {
				if err != nil || len(vars) != 1 || vars[0].Name != "API" || vars[0].Value != "ok" {
					t.Fatalf("Read(%s) = %v, %v; want API=ok", path, vars, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Read(%s) = %v, want an error containing %q", path, vars, tt.wantErr)
			}
			if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "environmentFile "+path) {
				t.Errorf("Read(%s) error = %v; want ErrFile naming environmentFile %s and %q", path, err, path, tt.wantErr)
			}
		})
	}
}

// TestReadAsNonRootKeepsLinksButNotFIFOs: run as the instance user (systemd
// User=, reading its LoadCredential= copy) escalates nothing by following a
// link, so a link in the user's own tree still loads; a FIFO must still not
// hang it. The reader is a child of this test binary running as otherUID.
func TestReadAsNonRootKeepsLinksButNotFIFOs(t *testing.T) {
	if p := os.Getenv("OCNIX_ENVFILE_CHILD"); p != "" {
		vars, err := Read(p)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error())
			return
		}
		for _, v := range vars {
			os.Stdout.WriteString(v.Name + "=" + v.Value + "\n")
		}
		return
	}
	testkit.RequireRoot(t, "runs the reader as another uid", "sudo -E go test ./internal/envfile/")
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // testing makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	own := filepath.Join(base, "creds")
	mkdir(t, own, 0o700, otherUID)
	write(t, filepath.Join(own, "real.env"), "API=ok\n", 0o600, otherUID)
	symlink(t, "real.env", filepath.Join(own, "app.env"), otherUID)
	if err := syscall.Mkfifo(filepath.Join(own, "fifo.env"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(own, "fifo.env"), otherUID, otherUID)
	// The test binary sits in a 0700 build dir: copy it where uid 65534 can run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "envfile.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, file, want string }{
		{"LinkInOwnTreeLoads", "app.env", "API=ok\n"},
		{"FIFOIsRefused", "fifo.env", "error: environmentFile " + filepath.Join(own, "fifo.env") + " is refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestReadAsNonRootKeepsLinksButNotFIFOs$")
			cmd.Env = []string{"OCNIX_ENVFILE_CHILD=" + filepath.Join(own, c.file)}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
			done := make(chan struct{})
			timer := time.AfterFunc(10*time.Second, func() {
				if cmd.Process != nil {
					cmd.Process.Kill()
				}
				close(done)
			})
			out, err := cmd.Output()
			if !timer.Stop() {
				<-done
				t.Fatalf("the reader as uid %d did not finish within 10s", otherUID)
			}
			if err != nil || !strings.HasPrefix(string(out), c.want) {
				t.Errorf("Read(%s) as uid %d: %q, %v; want it to start with %q", c.file, otherUID, out, err, c.want)
			}
		})
	}
}
