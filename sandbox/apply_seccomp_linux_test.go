package sandbox

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSeccompFilterCompiles checks, without loading anything, that
// libseccomp accepts every rule of the plan on every ABI: names,
// errnos, operators and argument conditions.
func TestSeccompFilterCompiles(t *testing.T) {
	for _, abi := range []int{3, 7, 9} {
		p, err := Build(testInput(), caps(abi))
		if err != nil {
			t.Fatal(err)
		}
		c, err := compileSeccomp(p.Seccomp)
		if err != nil {
			t.Fatalf("ABI %d: %v", abi, err)
		}
		if c.Notify() != (abi < 9) {
			t.Errorf("ABI %d: notify %v", abi, c.Notify())
		}
	}
}

// TestSeccompOtherArchitecturesKilled pins that only the native
// architecture has rules and every other one (i386 int 0x80, where
// socketcall would dodge the socket rules) hits the kill action. The
// x32 half is a kernel test (X32SyscallKillsProcess).
func TestSeccompOtherArchitecturesKilled(t *testing.T) {
	p, err := Build(testInput(), caps(7))
	if err != nil {
		t.Fatal(err)
	}
	for _, routine := range []bool{true, false} {
		checkOtherArchitecturesKilled(t, p.Seccomp, routine)
	}
}

func checkOtherArchitecturesKilled(t *testing.T, s SeccompPlan, routine bool) {
	f, err := newFilter(s, routine)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	fd, err := unix.MemfdCreate("pfc", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	mf := os.NewFile(uintptr(fd), "pfc")
	defer mf.Close()
	if err := f.ExportPFC(mf); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	pfc := string(b)
	if n := strings.Count(pfc, "# filter for arch "); n != 1 {
		t.Errorf("filter covers %d architectures, want only the native one:\n%s", n, pfc)
	}
	if !strings.Contains(pfc, "# invalid architecture action\naction KILL_PROCESS;") {
		t.Errorf("other architectures are not killed:\n%s", pfc)
	}
}
