package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// HostPid translates a pid id the probe wrote (its pidID: "NSPIDS@INO")
// into a pid of the test's PID namespace. With a proc of an ancestor
// namespace inside the sandbox, NSPIDS starts with the host's pid; with the
// sandbox's own proc it is the sandbox's pid only, and the process is found
// by its PID namespace's inode and its last NSpid. found is false when no
// such process exists (any more).
func HostPid(id string) (pid int, found bool, err error) {
	pids, ino, ok := strings.Cut(strings.TrimSpace(id), "@")
	f := strings.Fields(pids)
	if !ok || len(f) == 0 {
		return 0, false, fmt.Errorf("pid id %q: want NSPIDS@INO", id)
	}
	if len(f) > 1 {
		pid, err := strconv.Atoi(f[0])
		return pid, err == nil, err
	}
	want, err := strconv.ParseUint(ino, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("pid id %q: %w", id, err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		var st unix.Stat_t
		if unix.Stat(d+"/ns/pid", &st) != nil || st.Ino != want {
			continue
		}
		b, err := os.ReadFile(d + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if n := strings.Fields(v); len(n) > 0 && n[len(n)-1] == f[0] {
					pid, err := strconv.Atoi(filepath.Base(d))
					return pid, err == nil, err
				}
			}
		}
	}
	return 0, false, nil
}

// MustHostPid is HostPid for tests: it fails t on a malformed id and
// returns 0 when the process is gone.
func MustHostPid(t testing.TB, id string) int {
	t.Helper()
	pid, found, err := HostPid(id)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return 0
	}
	return pid
}
