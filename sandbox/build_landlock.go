package sandbox

import (
	"errors"
	"io/fs"
	"slices"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Rights granted by kind, before they are cut down to what the kernel
// handles. Missing from all of them, on purpose: ioctl_dev except on
// terminals, and resolve_unix except on read-write paths and allowed
// sockets.
const (
	rightsRX FSRights = ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir
	rightsRO FSRights = ll.AccessFSReadFile | ll.AccessFSReadDir
	rightsRW FSRights = rightsRX | ll.AccessFSWriteFile | ll.AccessFSRemoveDir |
		ll.AccessFSRemoveFile | ll.AccessFSMakeChar | ll.AccessFSMakeDir |
		ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo |
		ll.AccessFSMakeBlock | ll.AccessFSMakeSym | ll.AccessFSTruncate |
		// refer: git and package managers rename across directories;
		// it only works between trees with equal rights, so nothing
		// can be moved in from outside (EXDEV).
		ll.AccessFSRefer |
		// resolve_unix: the instance's own sockets (ABI ≥ 9).
		ll.AccessFSResolveUnix
	rightsDev FSRights = ll.AccessFSReadFile | ll.AccessFSWriteFile | ll.AccessFSTruncate
	rightsTTY FSRights = rightsDev | ll.AccessFSReadDir | ll.AccessFSIoctlDev
	// rightsFile are the only rights the kernel accepts on a rule for
	// a non-directory (EINVAL otherwise).
	rightsFile FSRights = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
		ll.AccessFSTruncate | ll.AccessFSIoctlDev | ll.AccessFSResolveUnix
)

// systemPaths is the read-and-execute baseline per layout. All of it
// is optional: a minimal container may lack /lib64 or /etc/pki.
func systemPaths(layout string) []string {
	if layout == LayoutNixOS {
		return []string{
			"/nix/store",
			"/run/current-system/sw",
			// /etc on NixOS is mostly symlinks into /etc/static and the
			// store; only what programs read at run time is listed.
			"/etc/static",
			"/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf",
			"/etc/nsswitch.conf", "/etc/passwd", "/etc/group",
			"/etc/ssl", "/etc/pki",
			"/etc/localtime", "/etc/zoneinfo",
			"/etc/protocols", "/etc/services", "/etc/os-release",
			"/etc/mime.types", "/etc/gitconfig", "/etc/inputrc", "/etc/terminfo",
		}
	}
	return []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}
}

type devicePath struct {
	path   string
	rights FSRights
}

var devicePaths = []devicePath{
	{path: "/dev/null", rights: rightsDev},
	{path: "/dev/zero", rights: rightsDev},
	{path: "/dev/full", rights: rightsDev},
	{path: "/dev/random", rights: rightsDev},
	{path: "/dev/urandom", rights: rightsDev},
	// Terminals need ioctl (TCGETS, TIOCGWINSZ) for shells and PTYs.
	// TIOCSTI and TIOCLINUX are denied by seccomp.
	{path: "/dev/tty", rights: rightsTTY},
	{path: "/dev/ptmx", rights: rightsTTY},
	{path: "/dev/pts", rights: rightsTTY},
}

// Read-only kernel views that Bun/Node and common tools read: /proc for
// /proc/self/*, CPU and memory counts; cgroup and CPU topology for
// available parallelism.
var procPaths = []string{"/proc", "/sys/fs/cgroup", "/sys/devices/system/cpu"}

// landlockPolicy builds the Landlock policy for in on the newest ABI:
// downgrade cuts it to the kernel's. It only stats paths through fsys.
func landlockPolicyFor(in Input, fsys fs.StatFS, layout string) landlockPolicy {
	pol := landlockPolicy{
		// TCP connect is not handled: outbound traffic is the network
		// policy's job.
		Handled: landlockSet{FS: allFSRights, Net: ll.AccessNetBindTCP, Scoped: allScopes, Log: true},
	}
	add := func(path, kind string, rights FSRights, required bool, why string) {
		r := PathRule{Path: path, Kind: kind, Required: required, Why: why}
		fi, err := fsys.Stat(strings.TrimPrefix(path, "/"))
		switch {
		case errors.Is(err, fs.ErrNotExist) && !required:
			return // Optional and absent on this host: nothing to explain.
		case errors.Is(err, fs.ErrNotExist):
			r.Missing = true
		case err == nil && !fi.IsDir():
			r.File = true
			rights &= rightsFile
		}
		r.Rights = rights
		pol.Paths = append(pol.Paths, r)
	}

	add(in.Directory, KindReadWrite, rightsRW, true, "directory (project)")
	add(in.StateDir, KindReadWrite, rightsRW, true, "stateDir (holds TMPDIR "+in.TmpDir+")")
	for _, p := range in.ReadWritePaths {
		add(p, KindReadWrite, rightsRW, true, "sandbox.readWritePaths")
	}
	for _, p := range in.ReadOnlyPaths {
		add(p, KindReadOnly, rightsRX, true, "sandbox.readOnlyPaths")
	}
	if in.LauncherDir != "" {
		add(in.LauncherDir, KindReadOnly, rightsRO, false, "the launcher's root-owned dir (opencode.json), never writable")
	}
	for _, p := range slices.Concat(in.ExecPaths, in.CommandPaths) {
		add(p, KindExec, rightsRX, true, "path entry or server command")
	}
	for _, p := range in.UnixSockets {
		// A socket that does not exist yet cannot carry a rule; allow
		// its directory to cover a server that starts later. Only
		// resolve_unix: below its ABI the rule drops out and the
		// supervisor checks the allow-list.
		add(p, KindSocket, ll.AccessFSResolveUnix, false, "sandbox.unixSockets.allow")
	}
	for _, p := range systemPaths(layout) {
		add(p, KindSystem, rightsRX, false, "system baseline ("+layout+")")
	}
	for _, d := range devicePaths {
		add(d.path, KindDevice, d.rights, false, "device node")
	}
	for _, p := range procPaths {
		add(p, KindProc, rightsRO, false, "kernel view read by Bun/Node")
	}

	ports := []int{0, in.ListenPort}
	ports = append(ports, in.BindPorts...)
	slices.Sort(ports)
	for _, port := range slices.Compact(ports) {
		why := "sandbox.allowBindPorts"
		switch port {
		case 0:
			why = "ephemeral ports (bind to port 0), for test servers"
		case in.ListenPort:
			why = "listen.port"
		}
		pol.Ports = append(pol.Ports, PortRule{Port: uint16(port), Rights: ll.AccessNetBindTCP, Why: why})
	}
	return pol
}
