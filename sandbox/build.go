package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// MinLandlockABI is the oldest Landlock ABI ocnix runs on (Linux 6.2).
//
// ABI 1 cannot allow renames across directories at all and ABI 2
// cannot restrict truncate(2), so a file outside the read-write paths
// could be emptied. ABI 3 is the first that keeps the filesystem
// promise; below it Run refuses to start instead of running with a
// weaker sandbox than explain would suggest.
const MinLandlockABI = 3

// DefaultMaxPending bounds the supervisor's in-flight connects (see
// unixgate): a hostile child must not tie up its threads.
const DefaultMaxPending = 64

// ErrLandlockTooOld is returned (wrapped) by Build when the kernel's
// Landlock ABI is below MinLandlockABI. The plan is still returned, so
// that explain can show it, but Run refuses it.
var ErrLandlockTooOld = errors.New("landlock ABI too old")

// ErrUnsupported is returned by Run outside Linux; Build and explain
// work everywhere.
var ErrUnsupported = errors.New("sandbox: Landlock and seccomp need Linux")

// ErrGateUnavailable means the unix-socket gate cannot take the caller's
// socket (pidfd_getfd) on this host, so no unix connect could succeed.
var ErrGateUnavailable = errors.New("the unix-socket gate cannot work on this host")

// ErrWrongUser means Run was started as neither root nor the instance
// user.
var ErrWrongUser = errors.New("wrong user")

// Build computes the sandbox plan for in on a host with caps. It does
// not change anything; it only stats paths through caps.FS.
func Build(in Input, caps Caps) (Plan, error) {
	in, err := normalize(in)
	if err == nil {
		err = checkOverlap(in)
	}
	if err != nil {
		return Plan{}, err
	}
	abi := caps.LandlockABI
	layout := caps.Layout
	if layout == "" {
		layout = LayoutFHS
	}
	p := Plan{
		Instance: in.Instance,
		User:     in.User,
		Group:    in.Group,
		TmpDir:   in.TmpDir,
		Layout:   layout,
		Landlock: buildLandlock(in, caps, layout),
		Seccomp:  buildSeccomp(abi, caps.SeccompAPI, in.SharedNetwork),
		Gate:     buildGate(in, abi),
	}
	p.Protections = buildProtections(in, abi, caps.PtraceScope)
	p.Protections = append(p.Protections, bindProtections(in, abi)...)
	if p.Gate.Mode == GateSupervisor && caps.SeccompAPI > 0 && caps.SeccompAPI < 6 {
		return p, fmt.Errorf("sandbox: libseccomp API level %d is below 6 and cannot build the user-notification filter the unix-socket gate needs (Landlock ABI %d < 9): upgrade libseccomp to 2.5 or newer", caps.SeccompAPI, abi)
	}
	if abi < MinLandlockABI {
		return p, fmt.Errorf("sandbox: kernel Landlock ABI %d is below the minimum %d (Linux 6.2; Landlock must be enabled with lsm=...,landlock): refusing to run unconfined: %w", abi, MinLandlockABI, ErrLandlockTooOld)
	}
	return p, nil
}

// normalize checks in and returns it with clean absolute paths and
// defaults filled in.
func normalize(in Input) (Input, error) {
	var errs []error
	if in.Instance == "" {
		errs = append(errs, errors.New("sandbox: instance name is empty"))
	}
	if in.User == "" {
		errs = append(errs, errors.New("sandbox: user is empty"))
	}
	if in.Group == "" {
		errs = append(errs, errors.New("sandbox: group is empty"))
	}
	cleanOne := func(key, p string) string {
		c, err := cleanPath(key, p)
		if err != nil {
			errs = append(errs, err)
		}
		return c
	}
	cleanList := func(key string, ps []string) []string {
		out := make([]string, 0, len(ps))
		for _, p := range ps {
			out = append(out, cleanOne(key, p))
		}
		return out
	}
	in.Directory = cleanOne("directory", in.Directory)
	in.StateDir = cleanOne("stateDir", in.StateDir)
	if in.TmpDir == "" && in.StateDir != "" {
		in.TmpDir = filepath.Join(in.StateDir, "tmp")
	}
	in.TmpDir = cleanOne("tmpDir", in.TmpDir)
	if in.StateDir != "" && in.TmpDir != "" && !under(in.TmpDir, in.StateDir) {
		errs = append(errs, fmt.Errorf("sandbox: path %q: tmpDir must be beneath stateDir %q so it is private to the instance", in.TmpDir, in.StateDir))
	}
	in.ReadWritePaths = cleanList("readWritePaths", in.ReadWritePaths)
	in.ReadOnlyPaths = cleanList("readOnlyPaths", in.ReadOnlyPaths)
	in.ExecPaths = cleanList("path", in.ExecPaths)
	in.UnixSockets = cleanList("unixSockets.allow", in.UnixSockets)
	if in.ListenPort < 1 || in.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("sandbox: listen port %d: must be 1-65535", in.ListenPort))
	}
	for _, port := range in.BindPorts {
		if port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("sandbox: allowBindPorts: port %d: must be 1-65535", port))
		}
	}
	return in, errors.Join(errs...)
}

func cleanPath(key, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("sandbox: %s: path is empty", key)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("sandbox: %s: path %q: must be absolute", key, p)
	}
	c := filepath.Clean(p)
	if c == "/" {
		// One rule on / would allow everything beneath it and turn
		// the sandbox into a no-op without anyone noticing.
		return "", fmt.Errorf("sandbox: %s: path %q: granting the whole filesystem is not allowed", key, p)
	}
	return c, nil
}

// under reports whether p is dir or beneath it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func buildGate(in Input, abi int) GatePlan {
	g := GatePlan{
		Mode:       GateSupervisor,
		Allow:      append([]string{}, in.UnixSockets...),
		OwnDirs:    ownDirs(in),
		MaxPending: DefaultMaxPending,
	}
	if abi >= 9 {
		g.Mode = GateLandlock
		g.MaxPending = 0
		return g
	}
	if in.SharedNetwork {
		ports := append([]int{in.ListenPort}, in.BindPorts...)
		slices.Sort(ports)
		g.Bind = &BindGate{Ports: slices.Compact(ports)}
	}
	return g
}

func ownDirs(in Input) []string {
	return append([]string{in.Directory, in.StateDir}, in.ReadWritePaths...)
}
