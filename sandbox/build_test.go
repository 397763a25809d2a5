package sandbox

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"github.com/ocnix/ocnix/internal/problem"
	"github.com/ocnix/ocnix/sandbox/unixgate"
)

// testFS is a small FHS host: only what is listed exists.
func testFS() fstest.MapFS {
	dir := &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	file := &fstest.MapFile{Mode: 0o755}
	return fstest.MapFS{
		"usr":          dir,
		"etc":          dir,
		"dev/null":     &fstest.MapFile{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666},
		"dev/pts":      dir,
		"proc":         dir,
		"srv/p":        dir,
		"var/lib/p":    dir,
		"opt/tool/bin": dir,
		"opt/srv/bin":  file,
		"run/pg":       dir,
		"data/ro":      dir,
		"data/rw":      dir,
	}
}

func testInput() Input {
	return Input{
		Instance:       "p",
		User:           "opencode-p",
		Group:          "opencode-p",
		Directory:      "/srv/p",
		StateDir:       "/var/lib/p",
		ReadWritePaths: []string{"/data/rw"},
		ReadOnlyPaths:  []string{"/data/ro"},
		ExecPaths:      []string{"/opt/tool/bin", "/opt/srv/bin"},
		UnixSockets:    []string{"/run/pg"},
		ListenPort:     8787,
		BindPorts:      []int{9000, 8787},
	}
}

func caps(abi int) Caps {
	return Caps{LandlockABI: abi, SeccompAPI: 6, Layout: LayoutFHS, FS: testFS()}
}

// wantHandledFS is, written out, every filesystem right the kernel
// handles at each ABI (Documentation/userspace-api/landlock.rst).
var wantHandledFS = []FSRights{0: 0, 1: 1<<13 - 1, 2: 1<<14 - 1, 3: 1<<15 - 1, 4: 1<<15 - 1,
	5: 1<<16 - 1, 6: 1<<16 - 1, 7: 1<<16 - 1, 8: 1<<16 - 1, 9: 1<<17 - 1}

// wantPaths is the rule list of testInput on testFS at abi.
func wantPaths(abi int) []PathRule {
	h := wantHandledFS[min(abi, 9)]
	rw := rightsRW & h
	rule := func(path, kind string, rights FSRights, required bool, why string) PathRule {
		return PathRule{Path: path, Kind: kind, Rights: rights & h, Required: required, Why: why}
	}
	rules := []PathRule{
		rule("/srv/p", KindReadWrite, rw, true, "directory (project)"),
		rule("/var/lib/p", KindReadWrite, rw, true, "stateDir (holds TMPDIR /var/lib/p/tmp)"),
		rule("/data/rw", KindReadWrite, rw, true, "sandbox.readWritePaths"),
		rule("/data/ro", KindReadOnly, rightsRX, true, "sandbox.readOnlyPaths"),
		rule("/opt/tool/bin", KindExec, rightsRX, true, "path entry or server command"),
		{Path: "/opt/srv/bin", Kind: KindExec, Rights: (rightsRX & rightsFile) & h, Required: true, File: true, Why: "path entry or server command"},
	}
	if h&ll.AccessFSResolveUnix != 0 {
		rules = append(rules, rule("/run/pg", KindSocket, ll.AccessFSResolveUnix, false, "sandbox.unixSockets.allow"))
	}
	rules = append(rules,
		rule("/usr", KindSystem, rightsRX, false, "system baseline (fhs)"),
		rule("/etc", KindSystem, rightsRX, false, "system baseline (fhs)"),
		PathRule{Path: "/dev/null", Kind: KindDevice, Rights: rightsDev & h, File: true, Why: "device node"},
		rule("/dev/pts", KindDevice, rightsTTY, false, "device node"),
		rule("/proc", KindProc, rightsRO, false, "kernel view read by Bun/Node"),
	)
	return rules
}

func wantPorts() []PortRule {
	return []PortRule{
		{Port: 0, Rights: ll.AccessNetBindTCP, Why: "ephemeral ports (bind to port 0), for test servers"},
		{Port: 8787, Rights: ll.AccessNetBindTCP, Why: "listen.port"},
		{Port: 9000, Rights: ll.AccessNetBindTCP, Why: "sandbox.allowBindPorts"},
	}
}

func TestBuildLandlockPerABI(t *testing.T) {
	tests := []struct {
		name    string
		abi     int
		want    LandlockPlan
		wantErr error
	}{
		{
			name: "ABI9ResolveUnixCoversAllowListAndOwnDirs",
			abi:  9,
			want: LandlockPlan{ABI: 9, MinABI: 3, HandledFS: 1<<17 - 1, HandledNet: ll.AccessNetBindTCP,
				Scoped: ll.ScopeAbstractUnixSocket | ll.ScopeSignal, Paths: wantPaths(9), Ports: wantPorts(), LogSubprocesses: true},
		},
		{
			name: "ABI7HasScopesButNoResolveUnix",
			abi:  7,
			want: LandlockPlan{ABI: 7, MinABI: 3, HandledFS: 1<<16 - 1, HandledNet: ll.AccessNetBindTCP,
				Scoped: ll.ScopeAbstractUnixSocket | ll.ScopeSignal, Paths: wantPaths(7), Ports: wantPorts(), LogSubprocesses: true},
		},
		{
			name: "ABI5HasNoScopes",
			abi:  5,
			want: LandlockPlan{ABI: 5, MinABI: 3, HandledFS: 1<<16 - 1, HandledNet: ll.AccessNetBindTCP,
				Paths: wantPaths(5), Ports: wantPorts()},
		},
		{
			name: "ABI4HasNoIoctlDev",
			abi:  4,
			want: LandlockPlan{ABI: 4, MinABI: 3, HandledFS: 1<<15 - 1, HandledNet: ll.AccessNetBindTCP,
				Paths: wantPaths(4), Ports: wantPorts()},
		},
		{
			name: "ABI3HasNoNetwork",
			abi:  3,
			want: LandlockPlan{ABI: 3, MinABI: 3, HandledFS: 1<<15 - 1, Paths: wantPaths(3), Ports: []PortRule{}},
		},
		{
			name:    "ABI2IsRefusedButExplained",
			abi:     2,
			want:    LandlockPlan{ABI: 2, MinABI: 3, HandledFS: 1<<14 - 1, Paths: wantPaths(2), Ports: []PortRule{}},
			wantErr: ErrLandlockTooOld,
		},
		{
			name:    "ABI1IsRefusedNeverSilentlyEmpty",
			abi:     1,
			want:    LandlockPlan{ABI: 1, MinABI: 3, HandledFS: 1<<13 - 1, Paths: wantPaths(1), Ports: []PortRule{}},
			wantErr: ErrLandlockTooOld,
		},
		{
			name:    "NoLandlockIsRefused",
			abi:     0,
			want:    LandlockPlan{ABI: 0, MinABI: 3, Paths: []PathRule{}, Ports: []PortRule{}},
			wantErr: ErrLandlockTooOld,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(testInput(), caps(tc.abi))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Build error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, p.Landlock); diff != "" {
				t.Errorf("Landlock plan mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildGateAndSeccompPerABI(t *testing.T) {
	tests := []struct {
		name       string
		abi        int
		wantMode   string
		wantNotify bool
		wantDgram  bool // AF_UNIX SOCK_DGRAM denied
	}{
		{name: "ABI7UsesSupervisorAndDeniesUnixDgram", abi: 7, wantMode: GateSupervisor, wantNotify: true, wantDgram: true},
		{name: "ABI8UsesSupervisorAndDeniesUnixDgram", abi: 8, wantMode: GateSupervisor, wantNotify: true, wantDgram: true},
		{name: "ABI9UsesLandlockAndAllowsUnixDgram", abi: 9, wantMode: GateLandlock, wantNotify: false, wantDgram: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(testInput(), caps(tc.abi))
			if err != nil {
				t.Fatal(err)
			}
			if p.Gate.Mode != tc.wantMode {
				t.Errorf("gate mode %q, want %q", p.Gate.Mode, tc.wantMode)
			}
			wantGate := GatePlan{Mode: tc.wantMode, Allow: []string{"/run/pg"}, OwnDirs: []string{"/srv/p", "/var/lib/p", "/data/rw"}}
			if tc.wantMode == GateSupervisor {
				wantGate.MaxPending = unixgate.DefaultMaxPending
			}
			if diff := cmp.Diff(wantGate, p.Gate); diff != "" {
				t.Errorf("gate mismatch (-want +got):\n%s", diff)
			}
			var notify int
			for _, r := range p.Seccomp.Rules {
				if r.Action == ActionNotify {
					notify++
					if !r.Routine {
						t.Errorf("notify rule %s is not routine: it would be logged and need the listener in the deny filter", r)
					}
				}
			}
			if (notify == 1) != tc.wantNotify || (notify > 1) {
				t.Errorf("notify rules: %d, want notify=%v", notify, tc.wantNotify)
			}
			var unixTypes []int
			for _, f := range p.Seccomp.Sockets.Families {
				if f.Family == afUnix {
					for _, ty := range f.Types {
						unixTypes = append(unixTypes, ty.Type)
					}
				}
			}
			if slices.Contains(unixTypes, sockDgram) == tc.wantDgram {
				t.Errorf("AF_UNIX types allowed %v, want SOCK_DGRAM denied=%v", unixTypes, tc.wantDgram)
			}
			if slices.Contains(unixTypes, sockRaw) {
				t.Errorf("AF_UNIX SOCK_RAW allowed: the kernel makes it a datagram socket")
			}
		})
	}
}

func TestBuildSeccompDenyList(t *testing.T) {
	p, err := Build(testInput(), caps(7))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"mount": "EPERM", "umount2": "EPERM", "fsopen": "EPERM", "move_mount": "EPERM", "open_tree": "EPERM",
		"unshare": "EPERM", "setns": "EPERM", "pivot_root": "EPERM", "chroot": "EPERM",
		"clone3":      "ENOSYS",
		"init_module": "EPERM", "finit_module": "EPERM", "kexec_load": "EPERM", "reboot": "EPERM",
		"swapon": "EPERM", "settimeofday": "EPERM", "clock_settime": "EPERM",
		"ptrace": "EPERM", "process_vm_readv": "EPERM", "process_vm_writev": "EPERM", "pidfd_getfd": "EPERM",
		"perf_event_open": "EPERM", "bpf": "EPERM", "userfaultfd": "EPERM",
		"keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM", "open_by_handle_at": "EPERM",
		"io_uring_setup": "ENOSYS", "io_uring_enter": "ENOSYS", "io_uring_register": "ENOSYS",
	}
	got := map[string]string{}
	for _, r := range p.Seccomp.Rules {
		if len(r.Args) == 0 && r.Action == ActionErrno {
			got[r.Syscall] = r.Errno
		}
	}
	for sc, errno := range want {
		if got[sc] != errno {
			t.Errorf("%s: got %q, want unconditional %s", sc, got[sc], errno)
		}
	}
	if p.Seccomp.DefaultAction != ActionAllow || p.Seccomp.BadArchAction != ActionKillProcess || !p.Seccomp.Log {
		t.Errorf("filter attributes: %+v", p.Seccomp)
	}
	clone := 0
	for _, r := range p.Seccomp.Rules {
		if r.Syscall == "clone" {
			clone++
		}
	}
	if clone != len(cloneNewFlags)+1 {
		t.Errorf("clone rules: %d, want one per CLONE_NEW* flag (%d) and CLONE_PARENT", clone, len(cloneNewFlags))
	}
}

func TestBuildMissingPaths(t *testing.T) {
	in := testInput()
	in.ReadOnlyPaths = append(in.ReadOnlyPaths, "/does/not/exist")
	p, err := Build(in, caps(7))
	if err != nil {
		t.Fatalf("a missing path is an error at run time, not at build time: %v", err)
	}
	var found bool
	for _, r := range p.Landlock.Paths {
		if r.Path == "/does/not/exist" {
			found = true
			if !r.Missing || !r.Required {
				t.Errorf("missing read-only path: %+v, want Missing and Required", r)
			}
		}
		if r.Path == "/lib64" {
			t.Errorf("optional baseline path absent on this host is listed: %+v", r)
		}
	}
	if !found {
		t.Error("missing read-only path is not in the plan")
	}
	if !strings.Contains(p.String(), "/does/not/exist") || !strings.Contains(p.String(), "MISSING") {
		t.Error("explain output does not flag the missing path")
	}
}

func TestBuildNixOSBaseline(t *testing.T) {
	fsys := testFS()
	fsys["nix/store"] = &fstest.MapFile{Mode: fs.ModeDir | 0o555}
	fsys["run/current-system/sw"] = &fstest.MapFile{Mode: fs.ModeDir | 0o555}
	fsys["etc/resolv.conf"] = &fstest.MapFile{Mode: 0o644}
	fsys["etc/NIXOS"] = &fstest.MapFile{Mode: 0o644}
	c := Caps{LandlockABI: 7, Layout: detectLayout(fsys), FS: fsys}
	if c.Layout != LayoutNixOS {
		t.Fatalf("layout %q, want nixos", c.Layout)
	}
	p, err := Build(testInput(), c)
	if err != nil {
		t.Fatal(err)
	}
	var sys []string
	for _, r := range p.Landlock.Paths {
		if r.Kind == KindSystem {
			sys = append(sys, r.Path)
		}
	}
	if diff := cmp.Diff([]string{"/nix/store", "/run/current-system/sw", "/etc/resolv.conf"}, sys); diff != "" {
		t.Errorf("nixos baseline (-want +got):\n%s", diff)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Input)
		wantKey string
		wantMsg string
	}{
		{name: "RelativePath", mutate: func(in *Input) { in.ReadOnlyPaths = []string{"/data/ro", "data"} }, wantKey: "sandbox.readOnlyPaths[1]", wantMsg: `path "data": must be absolute`},
		{name: "WholeFilesystem", mutate: func(in *Input) { in.ReadWritePaths = []string{"/"} }, wantKey: "sandbox.readWritePaths[0]", wantMsg: `granting the whole filesystem`},
		{name: "TmpDirOutsideStateDir", mutate: func(in *Input) { in.TmpDir = "/tmp" }, wantKey: "stateDir", wantMsg: `must be beneath stateDir`},
		{name: "ReadOnlyBeneathReadWrite", mutate: func(in *Input) { in.ReadOnlyPaths = []string{"/srv/p/secret"} }, wantKey: "sandbox.readOnlyPaths[0]", wantMsg: `would stay writable`},
		{name: "ReadOnlyBeneathReadWritePath", mutate: func(in *Input) { in.ReadOnlyPaths = []string{"/data/ro", "/data/rw/x/"} }, wantKey: "sandbox.readOnlyPaths[1]", wantMsg: `beneath the read-write path "/data/rw"`},
		{name: "ListenPortZero", mutate: func(in *Input) { in.ListenPort = 0 }, wantKey: "listen.port", wantMsg: `0: must be 1-65535`},
		{name: "BindPortTooLarge", mutate: func(in *Input) { in.BindPorts = []int{9000, 70000} }, wantKey: "sandbox.allowBindPorts[1]", wantMsg: `70000`},
		{name: "NoUser", mutate: func(in *Input) { in.User = "" }, wantKey: "user", wantMsg: `is empty`},
		{name: "NoGroup", mutate: func(in *Input) { in.Group = "" }, wantKey: "group", wantMsg: `is empty`},
		{name: "BadName", mutate: func(in *Input) { in.Instance = "Web" }, wantKey: "name", wantMsg: `not a valid instance name`},
		{name: "NameTooLong", mutate: func(in *Input) { in.Instance = strings.Repeat("a", 24) }, wantKey: "name", wantMsg: `too long`},
		{name: "RelativeDirectory", mutate: func(in *Input) { in.Directory = "srv/p" }, wantKey: "directory", wantMsg: `must be absolute`},
		{name: "EmptyStateDir", mutate: func(in *Input) { in.StateDir = "" }, wantKey: "stateDir", wantMsg: `path is empty`},
		{name: "RelativePathEntry", mutate: func(in *Input) { in.ExecPaths = []string{"/opt/tool/bin", "bin"} }, wantKey: "path[1]", wantMsg: `must be absolute`},
		{name: "RelativeCommand", mutate: func(in *Input) { in.CommandPaths = []string{"opencode"} }, wantKey: "command", wantMsg: `must be absolute`},
		{name: "UnixSocketRoot", mutate: func(in *Input) { in.UnixSockets = []string{"/run/pg", "/.."} }, wantKey: "sandbox.unixSockets.allow[1]", wantMsg: `whole filesystem`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput()
			tc.mutate(&in)
			want := problem.List{{Key: tc.wantKey}}
			got := Check(in)
			if len(got) != 1 || got[0].Key != tc.wantKey || !strings.Contains(got[0].Msg, tc.wantMsg) {
				t.Fatalf("Check = %v, want one problem %v containing %q", got, want, tc.wantMsg)
			}
			_, err := Build(in, caps(7))
			var perr *problem.Error
			if !errors.As(err, &perr) || perr.Instance != in.Instance || !slices.Equal(perr.List, got) {
				t.Errorf("Build error = %#v, want *problem.Error of %q with %v", err, in.Instance, got)
			}
		})
	}
}

// TestCheckReportsEveryProblemAtOnce: one bad spec, one pass, every
// sandbox problem keyed by the spec field it came from.
func TestCheckReportsEveryProblemAtOnce(t *testing.T) {
	in := testInput()
	in.ReadWritePaths = []string{"/data/rw", "relative"}
	in.UnixSockets = []string{"/"}
	in.BindPorts = []int{0}
	probs := Check(in)
	var keys []string
	for _, p := range probs {
		keys = append(keys, p.Key)
	}
	want := []string{"sandbox.readWritePaths[1]", "sandbox.unixSockets.allow[0]", "sandbox.allowBindPorts[0]"}
	if !slices.Equal(keys, want) {
		t.Fatalf("Check keys = %v, want %v (all of %v)", keys, want, probs)
	}
	_, err := Build(in, caps(7))
	var perr *problem.Error
	if !errors.As(err, &perr) || len(perr.List) != 3 {
		t.Fatalf("Build error = %v, want all three problems", err)
	}
	if s := err.Error(); !strings.Contains(s, `instance "p": spec is invalid (3 problems)`) || !strings.Contains(s, "sandbox.allowBindPorts[0]: 0: must be 1-65535") {
		t.Errorf("Build error text:\n%s", s)
	}
	if probs := Check(testInput()); len(probs) != 0 {
		t.Errorf("a good input has problems: %v", probs)
	}
}

func TestPlanJSONRoundTrip(t *testing.T) {
	for _, abi := range []int{3, 7, 9} {
		p, err := Build(testInput(), caps(abi))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Plan
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Errorf("ABI %d: plan changed through JSON (-before +after):\n%s", abi, diff)
		}
	}
}

func TestExplainNamesEnforcementOfUnixAllowList(t *testing.T) {
	tests := []struct {
		abi  int
		want string
	}{
		{abi: 7, want: "unix socket allow-list: enforced by seccomp supervisor (Landlock ABI 7 < 9)"},
		{abi: 9, want: "unix socket allow-list: enforced by Landlock resolve_unix (ABI 9 ≥ 9)"},
		{abi: 5, want: "DEGRADED  signals: can signal any process of the same user: Landlock ABI 5 < 6"},
		{abi: 3, want: "DEGRADED  TCP bind: any port can be bound: Landlock ABI 3 < 4"},
	}
	for _, tc := range tests {
		p, _ := Build(testInput(), caps(tc.abi))
		if s := p.String(); !strings.Contains(s, tc.want) {
			t.Errorf("ABI %d: explain output lacks %q:\n%s", tc.abi, tc.want, s)
		}
	}
}

// TestBuildPIDNamespace: only root with the supervisor gets a PID namespace
// (the guard lives under the supervisor), and explain says what holds.
func TestBuildPIDNamespace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		abi        int
		root       bool
		unitNS     bool // systemd PrivatePIDs=, under the launcher's init
		wantNS     bool
		wantStatus string
		wantOrphan string
	}{
		{name: "RootWithSupervisorGetsOne", abi: 7, root: true, wantNS: true, wantStatus: StatusEnforced, wantOrphan: "processes outliving the server"},
		{name: "InstanceUserCannotMakeOne", abi: 7, root: false, wantStatus: StatusDegraded, wantOrphan: "processes outliving the supervisor"},
		{name: "DirectExecOnABI9HasNone", abi: 9, root: true, wantStatus: StatusDegraded, wantOrphan: "processes outliving the server"},
		{name: "InstanceUserInTheUnitsNamespace", abi: 7, unitNS: true, wantStatus: StatusEnforced, wantOrphan: "processes outliving the server"},
		{name: "DirectExecInTheUnitsNamespace", abi: 9, unitNS: true, wantStatus: StatusEnforced, wantOrphan: "processes outliving the server"},
		// As root run makes its own (with a guard) inside the unit's.
		{name: "RootInTheUnitsNamespace", abi: 7, root: true, unitNS: true, wantNS: true, wantStatus: StatusEnforced, wantOrphan: "processes outliving the server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := caps(tc.abi)
			c.Root = tc.root
			c.OwnPIDNamespace = tc.unitNS
			p, err := Build(testInput(), c)
			if err != nil {
				t.Fatal(err)
			}
			if p.PIDNamespace != tc.wantNS {
				t.Errorf("PIDNamespace = %v, want %v", p.PIDNamespace, tc.wantNS)
			}
			got := map[string]string{}
			for _, pr := range p.Protections {
				got[pr.Name] = pr.Status
			}
			if got["pid namespace"] != tc.wantStatus {
				t.Errorf("pid namespace protection = %q, want %q", got["pid namespace"], tc.wantStatus)
			}
			if _, ok := got[tc.wantOrphan]; !ok {
				t.Errorf("no %q protection in %v", tc.wantOrphan, got)
			}
		})
	}
}
