package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocnix/ocnix/internal/atomicfile"
)

func openDirT(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestWriteFileAtIsAtomicAndExact(t *testing.T) {
	dir := t.TempDir()
	d := openDirT(t, dir)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := WriteFileAt(d, "f.json", []byte("one"), 0o640, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAt(d, "f.json", []byte("two"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "f.json"))
	if err != nil || string(got) != "two" {
		t.Fatalf("content = %q, %v; want two", got, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "f.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestEnsureFileAtSkipsAnEqualFile(t *testing.T) {
	dir := t.TempDir()
	d := openDirT(t, dir)
	if changed, err := EnsureFileAt(d, "f", []byte("x"), 0o600, nil); err != nil || !changed {
		t.Fatalf("first ensure = %v, %v; want a write", changed, err)
	}
	before, _ := os.Stat(filepath.Join(dir, "f"))
	if changed, err := EnsureFileAt(d, "f", []byte("x"), 0o600, nil); err != nil || changed {
		t.Fatalf("second ensure = %v, %v; want no write", changed, err)
	}
	after, _ := os.Stat(filepath.Join(dir, "f"))
	if !os.SameFile(before, after) {
		t.Error("an equal file was replaced")
	}
	if changed, err := EnsureFileAt(d, "f", []byte("x"), 0o644, nil); err != nil || !changed {
		t.Errorf("mode change = %v, %v; want a write", changed, err)
	}
}

func TestEnsureFileAtReplacesPlantedLinksWithoutTouchingTargets(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "opencode.json")); err != nil {
		t.Fatal(err)
	}
	d := openDirT(t, dir)
	if _, err := EnsureFileAt(d, "opencode.json", []byte("{}"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Errorf("symlink target was written: %q", got)
	}
	fi, err := os.Lstat(filepath.Join(dir, "opencode.json"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Errorf("opencode.json is %v, %v; want a regular file", fi, err)
	}
}

func TestReadFileAtDoesNotBlockOnAFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := openDirT(t, dir)
	done := make(chan error, 1)
	go func() { _, _, err := ReadFileAt(d, "f"); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadFileAt(FIFO) = %v, want ErrNotRegular", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadFileAt blocked on a FIFO")
	}
}

func TestSweepTempFilesRemovesOnlyOurLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".opencode.json" + atomicfile.TmpMarker + "0011", "keep.json", ".keep"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	if err := SweepTempFiles(openDirT(t, dir)); err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != ".keep,keep.json" {
		t.Errorf("after sweep: %s, want .keep,keep.json", got)
	}
}
