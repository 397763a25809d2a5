// Package testkit is TEST-ONLY support shared by the ocnix tests: the loud
// root skip, a goroutine-safe buffer, throwaway system users and free ports.
// Only _test.go files and test programs import it; product code must not
// (it runs useradd and fails tests).
package testkit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RequireRootEnv, set to 1, turns every root skip into a failure: a run that
// is meant to be privileged (CI as root) must not pass by skipping.
const RequireRootEnv = "OCNIX_TEST_REQUIRE_ROOT"

// RequireRoot skips t loudly unless it runs as root. why says what the test
// does that needs root, run how to run it; the skip reads
// "SKIPPED <test>: needs root (<why>); run: <run>", so a skipped privileged
// test is visible in the log and says how to make it run.
func RequireRoot(t testing.TB, why, run string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("FAILED %s: needs root (%s) and %s=1 forbids skipping; run: %s", t.Name(), why, RequireRootEnv, run)
	}
	t.Skipf("SKIPPED %s: needs root (%s); run: %s", t.Name(), why, run)
}

// LockedBuffer is a bytes.Buffer that a test can read while another
// goroutine (a logger, a child's output copier) still writes to it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// RandHex returns 2n random hex digits, for names no other run uses.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// User is a throwaway system user with its own group.
type User struct {
	*user.User
	UID, GID int
}

// AddUser creates the system user name (no home, no login shell, a group of
// the same name) and removes both when the test ends, even when it fails. A
// user of that name left by a killed run is removed first.
func AddUser(t testing.TB, name string) User {
	t.Helper()
	exec.Command("userdel", name).Run() // left over from a killed run
	exec.Command("groupdel", name).Run()
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { delUser(t, name) })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return User{User: u, UID: uid, GID: gid}
}

// delUser retries while the user is busy (userdel exit status 8): threads
// that acted as the user (the unix-socket gate's retired workers, a killed
// sandbox) may take a moment to exit.
func delUser(t testing.TB, name string) {
	var out []byte
	var err error
	for try := 0; try < 100; try++ {
		out, err = exec.Command("userdel", name).CombinedOutput()
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 8 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("userdel %s: %v: %s", name, err, out)
	}
	exec.Command("groupdel", name).Run() // gone with the user on most systems
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	// Below the kernel's default ephemeral range (32768–60999): setup and
	// run refuse a listen port inside it (launcher/ephemeral.go), and a
	// port the kernel hands out for port 0 is in it by definition.
	for range 200 {
		p := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("testkit: no free TCP port in 20000-31999 after 200 tries")
	return 0
}

// CountLines counts the lines of s that are exactly line: how often a test's
// script appended its word to a counter file.
func CountLines(s, line string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

// ServeUnix listens on the unix socket path, world-connectable (so that only
// a sandbox can keep a client out), until the test ends; it accepts and
// closes every connection and counts them.
func ServeUnix(t testing.TB, path string) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return &accepted
}

// WriteJSON writes v, indented, to path (mode 0644): a spec for the launcher.
func WriteJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteScript writes an executable shell script (set -e, mode 0755) with body
// to path by rename, so a copy that is running keeps its old inode, and
// returns path.
func WriteScript(t testing.TB, path, body string) string {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}
