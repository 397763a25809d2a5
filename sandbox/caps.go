package sandbox

import (
	"io/fs"
	"os"
)

// Host layouts decide the read-and-execute system baseline.
const (
	LayoutNixOS = "nixos" // /nix/store, /run/current-system/sw, selected /etc entries
	LayoutFHS   = "fhs"   // /usr, /bin, /sbin, /lib*, /etc
)

// Caps are the facts about this host that change the plan. DetectCaps
// fills them; tests construct them by hand, so every kernel can be
// covered by a table test on any machine.
type Caps struct {
	// LandlockABI is the kernel's Landlock ABI version, 0 when
	// Landlock is missing or disabled at boot.
	LandlockABI int `json:"landlockABI"`
	// SeccompAPI is libseccomp's API level (0 when unknown). The
	// supervisor's filter needs level 6 (user notification).
	SeccompAPI int `json:"seccompAPI"`
	// Layout is LayoutNixOS or LayoutFHS.
	Layout string `json:"layout"`
	// PtraceScope is kernel.yama.ptrace_scope, NoYama without Yama. From 2
	// on, the unix-socket gate's pidfd_getfd needs CAP_SYS_PTRACE (2) or
	// is impossible (3).
	PtraceScope int `json:"ptraceScope"`
	// Root: the launcher runs as root (euid 0), so run can give the
	// sandbox a PID namespace of its own. Under systemd User= it cannot;
	// the unit's PrivatePIDs= and cgroup take that part.
	Root bool `json:"root"`
	// OwnPIDNamespace: the launcher runs in a PID namespace that is not
	// the host's, under the launcher's own init as pid 1 (internal/pidinit):
	// systemd's PrivatePIDs=, which the NixOS module sets on systemd ≥ 257.
	OwnPIDNamespace bool `json:"ownPIDNamespace,omitempty"`
	// FS is used to find out whether paths exist and whether they are
	// directories; it is read, never written. Nil means the real root
	// filesystem. Paths are looked up without the leading slash, as
	// io/fs requires.
	FS fs.StatFS `json:"-"`
}

// NoYama is Caps.PtraceScope on a kernel without the Yama LSM, where
// ptrace access follows the classic same-uid rules.
const NoYama = -1

func (c Caps) fsys() fs.StatFS {
	if c.FS != nil {
		return c.FS
	}
	return os.DirFS("/").(fs.StatFS)
}

// detectLayout tells NixOS from an FHS host. /etc/NIXOS is the marker
// NixOS itself writes; /run/current-system covers containers built
// without it.
func detectLayout(fsys fs.StatFS) string {
	for _, p := range []string{"etc/NIXOS", "run/current-system"} {
		if _, err := fsys.Stat(p); err == nil {
			return LayoutNixOS
		}
	}
	return LayoutFHS
}
