package threadcred

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.RequireRoot(t, "it changes a thread's uid, gid and groups", "sudo go test ./internal/threadcred/")
	}
}

// status reads the Uid, Gid and Groups lines of a task.
func status(t *testing.T, tid int) (uids, gids, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Error(err) // not Fatal: also called from other goroutines
		return "", "", ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "Uid":
			uids = v
		case "Gid":
			gids = v
		case "Groups":
			groups = v
		}
	}
	return uids, gids, groups
}

// onRetiredThread runs fn on a locked thread that is never unlocked, so the
// runtime ends it with its changed credentials, and returns fn's error and
// the thread's id.
func onRetiredThread(fn func() error) (int, error) {
	type res struct {
		tid int
		err error
	}
	c := make(chan res)
	go func() {
		runtime.LockOSThread()
		c <- res{unix.Gettid(), fn()}
		// Returning locked retires the thread.
	}()
	r := <-c
	return r.tid, r.err
}

// TestChangesOnlyTheCallingThread: the switch shows in the thread's own
// status while this (other) thread, and with it the process, keeps root.
func TestChangesOnlyTheCallingThread(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	me := unix.Gettid()
	beforeU, beforeG, beforeGroups := status(t, me)

	seen := make(chan [3]string, 1)
	stop := make(chan struct{})
	defer close(stop)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is retired
		err := Setgroups([]int{4242, 4243})
		if err == nil {
			err = Setresgid(4242, 4242, Keep)
		}
		if err == nil {
			err = Setresuid(4241, 4241, Keep)
		}
		done <- err
		if err != nil {
			return
		}
		u, g, gs := status(t, unix.Gettid())
		seen <- [3]string{u, g, gs}
		<-stop
	}()
	if err := <-done; err != nil {
		t.Fatalf("switch: %v", err)
	}
	got := <-seen
	// Real and effective switched, saved kept (0), filesystem follows effective.
	if want := "4241 4241 0 4241"; got[0] != want {
		t.Errorf("switched thread uids %q, want %q", got[0], want)
	}
	if want := "4242 4242 0 4242"; got[1] != want {
		t.Errorf("switched thread gids %q, want %q", got[1], want)
	}
	if want := "4242 4243"; got[2] != want {
		t.Errorf("switched thread groups %q, want %q", got[2], want)
	}
	afterU, afterG, afterGroups := status(t, me)
	if afterU != beforeU || afterG != beforeG || afterGroups != beforeGroups {
		t.Errorf("another thread changed: uids %q→%q gids %q→%q groups %q→%q", beforeU, afterU, beforeG, afterG, beforeGroups, afterGroups)
	}
	if os.Geteuid() != 0 {
		t.Errorf("process euid %d after a per-thread switch", os.Geteuid())
	}
}

func TestEmptyGroups(t *testing.T) {
	requireRoot(t)
	var groups string
	_, err := onRetiredThread(func() error {
		if err := Setgroups(nil); err != nil {
			return err
		}
		_, _, groups = status(t, unix.Gettid())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if groups != "" {
		t.Errorf("groups %q after Setgroups(nil), want none", groups)
	}
}

// TestRefusals: without the capability the kernel refuses, and the error
// names the call; out-of-range ids never reach the kernel.
func TestRefusals(t *testing.T) {
	requireRoot(t)
	_, err := onRetiredThread(func() error {
		// Drop every id to 4241: CAP_SETUID and CAP_SETGID are gone.
		if err := Setresuid(4241, 4241, 4241); err != nil {
			return err
		}
		err := Setgroups([]int{0})
		if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "setgroups [0]") {
			return fmt.Errorf("Setgroups without CAP_SETGID: %v, want EPERM naming the call", err)
		}
		if err := Setresuid(0, 0, 0); !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("Setresuid(0) after dropping: %v, want EPERM", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, ids := range [][3]int{{-2, Keep, Keep}, {Keep, 1 << 32, Keep}, {Keep, Keep, 1<<32 - 1}} {
		if err := Setresuid(ids[0], ids[1], ids[2]); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Setresuid%v = %v, want EINVAL", ids, err)
		}
		if err := Setresgid(ids[0], ids[1], ids[2]); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Setresgid%v = %v, want EINVAL", ids, err)
		}
	}
	if err := Setgroups([]int{1, -1}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Setgroups with -1 = %v, want EINVAL", err)
	}
	// Nothing above reached this thread.
	if u, _, _ := status(t, unix.Gettid()); !strings.HasPrefix(u, "0 0 0") {
		t.Errorf("test thread uids %q", u)
	}
}

// TestAccessAsAnotherUser: the kernel's answer for nobody, with the
// positive twin, and the caller's thread keeps root's credentials.
func TestAccessAsAnotherUser(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	// t.TempDir makes its parent 0700 too; nobody must be able to search both.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	open, closed := dir+"/open", dir+"/closed"
	for p, mode := range map[string]os.FileMode{open: 0o644, closed: 0o600} {
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	const nobody = 65534
	if err := Access(open, unix.R_OK, nobody, nobody, []int{nobody}); err != nil {
		t.Errorf("nobody reads a 0644 file: %v", err)
	}
	if err := Access(closed, unix.R_OK, nobody, nobody, []int{nobody}); !errors.Is(err, ErrDenied) {
		t.Errorf("nobody reads root's 0600 file: %v, want ErrDenied", err)
	}
	if err := Access(open, unix.W_OK, nobody, nobody, []int{nobody}); !errors.Is(err, ErrDenied) {
		t.Errorf("nobody writes root's 0644 file: %v, want ErrDenied", err)
	}
	if r, e, s := unix.Getresuid(); r != 0 || e != 0 || s != 0 {
		t.Errorf("the caller's uids became %d/%d/%d", r, e, s)
	}
}
