package e2e

import (
	"strconv"
	"testing"
)

// TestProcHidesOtherUsersProcesses: issue 10 item 6. `run` as root (outside
// systemd) gives the sandbox a /proc mounted hidepid=invisible, as systemd's
// ProtectProc=invisible does for the unit. On ccade3b the sandbox read every
// process's command line.
func TestProcHidesOtherUsersProcesses(t *testing.T) {
	si := newSandboxInstance(t, "proc", nil)
	victim := startBg(t, false, "sleep", "300") // root's
	vpid := strconv.Itoa(victim.Process.Pid)
	for _, tc := range []struct {
		name, path, want, bareWant string
	}{
		{"RootProcessCmdline", "/proc/" + vpid + "/cmdline", "ENOENT", "ok"},
		{"InitCmdline", "/proc/1/cmdline", "ENOENT", "ok"},
		{"OwnProcess", "/proc/self/status", "ok", ""},
		{"KernelView", "/proc/meminfo", "ok", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := si.probe("read", tc.path); got != tc.want {
				t.Errorf("sandboxed read %s = %q, want %q", tc.path, got, tc.want)
			}
			if tc.bareWant != "" {
				if got := bare(t, "read", tc.path); got != tc.bareWant {
					t.Errorf("bare read %s = %q, want %q (the positive twin)", tc.path, got, tc.bareWant)
				}
			}
		})
	}
}
