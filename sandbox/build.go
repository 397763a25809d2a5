package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ocnix/ocnix/internal/names"
	"github.com/ocnix/ocnix/internal/problem"
	"github.com/ocnix/ocnix/sandbox/unixgate"
)

// MinLandlockABI is the oldest Landlock ABI ocnix runs on (Linux 6.2).
//
// ABI 1 cannot allow renames across directories at all and ABI 2
// cannot restrict truncate(2), so a file outside the read-write paths
// could be emptied. ABI 3 is the first that handles all of fsPromise
// (a test holds the two together); below it Run refuses to start instead of running with a
// weaker sandbox than explain would suggest.
const MinLandlockABI = 3

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
//
// Problems of in come back all at once as a *problem.Error (see Check).
// Facts of the host are not problems of the spec: once in is clean they
// come back as plain errors, ErrLandlockTooOld with the plan, so that
// check can pass on an old kernel and explain can still show the plan.
func Build(in Input, caps Caps) (Plan, error) {
	if probs := Check(in); len(probs) > 0 {
		return Plan{}, probs.Err(in.Instance)
	}
	in = normalize(in)
	layout := caps.Layout
	if layout == "" {
		layout = LayoutFHS
	}
	l, prots := downgrade(landlockPolicyFor(in, caps.fsys(), layout), caps.LandlockABI)
	p := Plan{
		Instance: in.Instance,
		User:     in.User,
		Group:    in.Group,
		TmpDir:   in.TmpDir,
		Layout:   layout,
		Landlock: l,
		Seccomp:  buildSeccomp(l.gatesUnix(), caps.SeccompAPI, in.SharedNetwork),
		Gate:     buildGate(in, l),
	}
	p.PIDNamespace = caps.Root && p.Gate.Mode == GateSupervisor
	p.Protections = append(prots, buildProtections(l, p.Gate, caps.PtraceScope, p.PIDNamespace, caps.OwnPIDNamespace)...)
	p.Protections = append(p.Protections, bindProtections(in, l, p.Gate)...)
	if p.Gate.Mode == GateSupervisor && caps.SeccompAPI > 0 && caps.SeccompAPI < 6 {
		return p, fmt.Errorf("sandbox: libseccomp API level %d is below 6 and cannot build the user-notification filter the unix-socket gate needs (Landlock ABI %d < %d): upgrade libseccomp to 2.5 or newer", caps.SeccompAPI, l.ABI, resolveUnixSince)
	}
	if !l.keepsFSPromise() {
		return p, fmt.Errorf("sandbox: kernel Landlock ABI %d is below the minimum %d (Linux 6.2; Landlock must be enabled with lsm=...,landlock): refusing to run unconfined: %w", l.ABI, MinLandlockABI, ErrLandlockTooOld)
	}
	return p, nil
}

// Check returns every problem of in at once, keyed in the spec's JSON
// spelling (see Input), so that one pass over a bad spec shows them all.
// It reads nothing: whether paths exist is for Run to find out, and the
// kernel's Landlock ABI is a fact of the host, not of the spec.
func Check(in Input) problem.List {
	var probs problem.List
	if err := names.CheckInstance(in.Instance); err != nil {
		probs.Add("name", "%v", err)
	}
	if in.User == "" {
		probs.Add("user", "is empty")
	}
	if in.Group == "" {
		probs.Add("group", "is empty")
	}
	path := func(key, p string) bool {
		msg := pathProblem(p)
		if msg != "" {
			probs.Add(key, "%s", msg)
		}
		return msg == ""
	}
	paths := func(key string, ps []string) {
		for i, p := range ps {
			path(fmt.Sprintf("%s[%d]", key, i), p)
		}
	}
	okDir := path("directory", in.Directory)
	okState := path("stateDir", in.StateDir)
	if in.TmpDir != "" {
		if msg := pathProblem(in.TmpDir); msg != "" {
			probs.Add("stateDir", "TMPDIR: %s", msg)
		} else if okState && !under(filepath.Clean(in.TmpDir), filepath.Clean(in.StateDir)) {
			probs.Add("stateDir", "TMPDIR %q must be beneath stateDir %q so it is private to the instance", in.TmpDir, in.StateDir)
		}
	}
	paths("sandbox.readWritePaths", in.ReadWritePaths)
	paths("sandbox.readOnlyPaths", in.ReadOnlyPaths)
	paths("path", in.ExecPaths)
	for _, p := range in.CommandPaths {
		path("command", p)
	}
	paths("sandbox.unixSockets.allow", in.UnixSockets)
	if in.ListenPort < 1 || in.ListenPort > 65535 {
		probs.Add("listen.port", "%d: must be 1-65535", in.ListenPort)
	}
	for i, port := range in.BindPorts {
		if port < 1 || port > 65535 {
			probs.Add(fmt.Sprintf("sandbox.allowBindPorts[%d]", i), "%d: must be 1-65535", port)
		}
	}

	// Landlock rights only add up: a read-only path beneath a
	// read-write one would silently stay writable.
	var rw []string
	for _, d := range []struct {
		ok bool
		p  string
	}{{okDir, in.Directory}, {okState, in.StateDir}} {
		if d.ok {
			rw = append(rw, filepath.Clean(d.p))
		}
	}
	for _, p := range in.ReadWritePaths {
		if pathProblem(p) == "" {
			rw = append(rw, filepath.Clean(p))
		}
	}
	for i, ro := range in.ReadOnlyPaths {
		if pathProblem(ro) != "" {
			continue
		}
		for _, w := range rw {
			if under(filepath.Clean(ro), w) {
				probs.Add(fmt.Sprintf("sandbox.readOnlyPaths[%d]", i), "%q is beneath the read-write path %q, and Landlock rights only add up, so it would stay writable", ro, w)
				break
			}
		}
	}
	return probs
}

// pathProblem says what is wrong with p as a path to grant, or "".
func pathProblem(p string) string {
	switch {
	case p == "":
		return "path is empty"
	case !filepath.IsAbs(p):
		return fmt.Sprintf("path %q: must be absolute", p)
	case filepath.Clean(p) == "/":
		// One rule on / would allow everything beneath it and turn
		// the sandbox into a no-op without anyone noticing.
		return fmt.Sprintf("path %q: granting the whole filesystem is not allowed", p)
	}
	return ""
}

// normalize returns in, which Check passed, with clean paths and
// defaults filled in.
func normalize(in Input) Input {
	cleanList := func(ps []string) []string {
		out := make([]string, 0, len(ps))
		for _, p := range ps {
			out = append(out, filepath.Clean(p))
		}
		return out
	}
	in.Directory = filepath.Clean(in.Directory)
	in.StateDir = filepath.Clean(in.StateDir)
	if in.TmpDir == "" {
		in.TmpDir = filepath.Join(in.StateDir, "tmp")
	}
	in.TmpDir = filepath.Clean(in.TmpDir)
	in.ReadWritePaths = cleanList(in.ReadWritePaths)
	in.ReadOnlyPaths = cleanList(in.ReadOnlyPaths)
	in.ExecPaths = cleanList(in.ExecPaths)
	in.CommandPaths = cleanList(in.CommandPaths)
	in.UnixSockets = cleanList(in.UnixSockets)
	return in
}

// under reports whether p is dir or beneath it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func buildGate(in Input, l LandlockPlan) GatePlan {
	g := GatePlan{
		Mode:       GateSupervisor,
		Allow:      append([]string{}, in.UnixSockets...),
		OwnDirs:    ownDirs(in),
		MaxPending: unixgate.DefaultMaxPending,
	}
	if l.gatesUnix() {
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
