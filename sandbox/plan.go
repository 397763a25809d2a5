package sandbox

import (
	"fmt"
	"strings"
)

// Plan is the complete, effective sandbox for one instance on one
// kernel, as plain data. Build computes it without side effects; Run
// applies exactly this value (it travels to the re-exec'd child as
// JSON), so what explain prints is what gets enforced.
type Plan struct {
	Instance string       `json:"instance"`
	User     string       `json:"user"`
	Group    string       `json:"group"`
	TmpDir   string       `json:"tmpDir"`
	Layout   string       `json:"layout"`
	Landlock LandlockPlan `json:"landlock"`
	Seccomp  SeccompPlan  `json:"seccomp"`
	Gate     GatePlan     `json:"gate"`
	// PIDNamespace: Run starts the server in a PID namespace of its own
	// whose init is a root-owned guard (guard_linux.c). Needs root and
	// the supervisor (Landlock ABI < 9); Run refuses the plan without
	// root rather than start the server without it.
	PIDNamespace bool         `json:"pidNamespace"`
	Protections  []Protection `json:"protections"`
}

// LandlockPlan is the ruleset: what is handled (denied unless a rule
// allows it) and the rules that allow.
type LandlockPlan struct {
	// ABI is the kernel's Landlock ABI the plan was built for.
	ABI int `json:"abi"`
	// MinABI is the lowest ABI ocnix runs on (MinLandlockABI).
	MinABI     int        `json:"minABI"`
	HandledFS  FSRights   `json:"handledFS"`
	HandledNet NetRights  `json:"handledNet"`
	Scoped     Scopes     `json:"scoped"`
	Paths      []PathRule `json:"paths"`
	Ports      []PortRule `json:"ports"`
	// LogSubprocesses audits denials of the executed target (ABI ≥ 7;
	// by default Landlock stops logging at execve).
	LogSubprocesses bool `json:"logSubprocesses"`
}

// Path rule kinds. The kind decides the missing-path policy (see the
// package documentation).
const (
	KindReadWrite = "read-write"
	KindReadOnly  = "read-only"
	KindExec      = "exec"
	KindSystem    = "system"
	KindDevice    = "device"
	KindProc      = "proc"
	KindSocket    = "unix-socket"
)

// PathRule allows Rights beneath Path.
type PathRule struct {
	Path   string   `json:"path"`
	Kind   string   `json:"kind"`
	Rights FSRights `json:"rights"`
	// Required rules make Run fail when Path does not exist; others
	// are skipped.
	Required bool `json:"required"`
	// File is true when Path was not a directory at build time. Only
	// file rights may be granted on files; Run re-checks, since the
	// path may change between explain and run.
	File bool `json:"file,omitempty"`
	// Missing is true when Path did not exist at build time.
	Missing bool   `json:"missing,omitempty"`
	Why     string `json:"why"`
}

func (r PathRule) String() string {
	var flags []string
	if r.Required {
		flags = append(flags, "required")
	} else {
		flags = append(flags, "optional")
	}
	if r.Missing {
		flags = append(flags, "MISSING")
	}
	return fmt.Sprintf("%-10s %s %v [%s] — %s", r.Kind, r.Path, r.Rights, strings.Join(flags, ","), r.Why)
}

// PortRule allows Rights on a TCP port. Port 0 stands for "let the
// kernel pick an ephemeral port".
type PortRule struct {
	Port   uint16    `json:"port"`
	Rights NetRights `json:"rights"`
	Why    string    `json:"why"`
}

func (r PortRule) String() string {
	return fmt.Sprintf("port %d %v — %s", r.Port, r.Rights, r.Why)
}

// SeccompPlan is the seccomp policy, loaded as three stacked filters
// (the kernel runs them all and the most restrictive action wins):
//
//   - the routine filter: Rules with Routine set, which notify the
//     supervisor or answer ENOSYS to make callers fall back; never
//     logged, since every connect and every thread start hits it;
//   - the socket filter: Sockets, an allow-list for socket(2) and
//     socketpair(2), logged when Log is set;
//   - the deny filter: the other Rules, logged when Log is set.
//
// The kernel audits a call per the filter whose action won, so the
// split keeps routine events out of the log and real denials in it.
type SeccompPlan struct {
	DefaultAction string `json:"defaultAction"`
	// BadArchAction applies to syscalls of other ABIs (on x86-64: the
	// 32-bit int 0x80 entry and x32), which would otherwise bypass
	// every rule below, e.g. through socketcall.
	BadArchAction string `json:"badArchAction"`
	// Log sets SECCOMP_FILTER_FLAG_LOG on the socket and deny filters.
	Log     bool          `json:"log"`
	Rules   []SyscallRule `json:"rules"`
	Sockets SocketPolicy  `json:"sockets"`
}

// SocketPolicy is the allow-list for socket(2) and socketpair(2). A
// call is allowed when its family is listed, its type with only
// TypeFlags masked off is listed for that family (socketpair: and
// marked Pair), and its protocol is listed for that type; everything
// else, including families, types, flag bits and protocols that no
// kernel has yet, fails with the errno of the first level that does
// not match. Arguments are compared on their low 32 bits, as the
// kernel reads an int.
type SocketPolicy struct {
	Families      []SocketFamily `json:"families"`
	TypeFlags     uint32         `json:"typeFlags"`     // SOCK_NONBLOCK|SOCK_CLOEXEC
	FamilyErrno   string         `json:"familyErrno"`   // family not listed
	ProtocolErrno string         `json:"protocolErrno"` // protocol not listed for the type
}

// SocketFamily lists the types allowed in one address family.
type SocketFamily struct {
	Family int          `json:"family"`
	Name   string       `json:"name"`
	Types  []SocketType `json:"types"`
	// TypeErrno answers a type (or flag bit) that is not listed.
	TypeErrno string `json:"typeErrno"`
	Why       string `json:"why"`
}

// SocketType is one allowed type of a family and its protocols.
type SocketType struct {
	Type      int    `json:"type"`
	Name      string `json:"name"`
	Protocols []int  `json:"protocols"`
	// Pair allows socketpair(2) of this family and type too.
	Pair bool `json:"pair,omitempty"`
}

func (t SocketType) String() string {
	protos := make([]string, len(t.Protocols))
	for i, p := range t.Protocols {
		protos[i] = fmt.Sprint(p)
	}
	s := fmt.Sprintf("%s protocol %s", t.Name, strings.Join(protos, "|"))
	if t.Pair {
		s += " (socketpair too)"
	}
	return s
}

// Seccomp actions used in plans.
const (
	ActionAllow       = "allow"
	ActionErrno       = "errno"
	ActionNotify      = "notify"
	ActionKillProcess = "kill-process"
)

// SyscallRule matches one syscall, and, when Args is not empty, only
// calls where every condition holds.
type SyscallRule struct {
	Syscall string    `json:"syscall"`
	Action  string    `json:"action"`
	Errno   string    `json:"errno,omitempty"` // errno name for ActionErrno, e.g. "EPERM"
	Args    []ArgCond `json:"args,omitempty"`
	Why     string    `json:"why"`
	// Routine rules are no denial (a notification, or an ENOSYS that
	// callers fall back from) and go into the filter without the log
	// bit.
	Routine bool `json:"routine,omitempty"`
}

func (r SyscallRule) String() string {
	var conds []string
	for _, c := range r.Args {
		conds = append(conds, c.String())
	}
	act := r.Action
	if r.Action == ActionErrno {
		act = r.Errno
	}
	return fmt.Sprintf("%s(%s) -> %s — %s", r.Syscall, strings.Join(conds, " && "), act, r.Why)
}

// Comparison operators for ArgCond.
const (
	OpEqual       = "=="
	OpGreaterEq   = ">="
	OpMaskedEqual = "&=="
)

// ArgCond compares syscall argument Arg (0-based). For OpMaskedEqual
// it holds when arg&Mask == Value.
type ArgCond struct {
	Arg   uint   `json:"arg"`
	Op    string `json:"op"`
	Value uint64 `json:"value"`
	Mask  uint64 `json:"mask,omitempty"`
}

func (c ArgCond) String() string {
	if c.Op == OpMaskedEqual {
		return fmt.Sprintf("a%d & %#x == %#x", c.Arg, c.Mask, c.Value)
	}
	return fmt.Sprintf("a%d %s %#x", c.Arg, c.Op, c.Value)
}

// Gate modes: how the unix-socket allow-list is enforced.
const (
	// GateLandlock: Landlock ABI ≥ 9 checks connect(2) and sendmsg(2)
	// on pathname sockets itself (LANDLOCK_ACCESS_FS_RESOLVE_UNIX);
	// Run execs the target directly.
	GateLandlock = "landlock"
	// GateSupervisor: seccomp user notification hands every connect(2)
	// to the resident supervisor (package unixgate).
	GateSupervisor = "supervisor"
)

// GatePlan is the unix-socket allow-list and how it is enforced.
type GatePlan struct {
	Mode string `json:"mode"`
	// Allow lists socket files and directories that may be connected to.
	Allow []string `json:"allow"`
	// OwnDirs are the instance's read-write paths; sockets beneath
	// them are allowed.
	OwnDirs []string `json:"ownDirs"`
	// MaxPending bounds the connects the supervisor handles at once.
	MaxPending int `json:"maxPending,omitempty"`
	// Bind, when set, makes the supervisor gate bind(2) too: no abstract
	// unix names, socket files only in OwnDirs, TCP and UDP ports only 0
	// and BindPorts. Set for an instance in the host's network namespace.
	Bind *BindGate `json:"bind,omitempty"`
}

// BindGate is GatePlan.Bind.
type BindGate struct {
	Ports []int `json:"ports"` // besides 0 (ephemeral)
}

// Protection statuses.
const (
	StatusEnforced = "enforced"
	StatusDegraded = "DEGRADED"
	// StatusDelegated: another layer (the network policy) owns it.
	StatusDelegated = "delegated"
)

// Protection is one promise of the sandbox and whether this kernel
// keeps it.
type Protection struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

func (p Protection) String() string {
	return fmt.Sprintf("%-9s %s: %s", p.Status, p.Name, p.Detail)
}
