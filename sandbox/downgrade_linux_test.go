package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/testkit"
	"golang.org/x/sys/unix"
)

// TestDowngradedPlanKeepsItsWord runs the plan downgrade makes for every
// ABI from the minimum up to this kernel's on the real kernel, and checks
// that each protection explain calls enforced holds and each it calls lost
// is really open: explain and the applied ruleset come from one value.
func TestDowngradedPlanKeepsItsWord(t *testing.T) {
	f := newFixture(t)
	kernel := DetectCaps().LandlockABI
	if kernel < MinLandlockABI {
		t.Fatalf("newFixture runs only on a kernel with Landlock ABI ≥ %d, got %d", MinLandlockABI, kernel)
	}
	for abi := MinLandlockABI; abi <= kernel; abi++ {
		t.Run(fmt.Sprintf("ABI%d", abi), func(t *testing.T) {
			caps := DetectCaps()
			caps.LandlockABI = abi
			// Landlock's word alone: a PID namespace would hide the
			// outsider from the signal probe first.
			caps.Root = false
			plan, err := Build(f.in, caps)
			must(t, err)
			status := map[string]string{}
			for _, p := range plan.Protections {
				status[p.Name] = p.Status
			}
			want := func(name string, enforced, lost int) int {
				if status[name] == StatusEnforced {
					return enforced
				}
				return lost
			}
			pid := itoa(startOutsider(t, f.uid, f.gid))
			for _, tc := range []probeCase{
				{name: "FileOutsideUnreadable", args: []string{"read", f.outside}, want: want("filesystem allow-list", int(unix.EACCES), 0)},
				{name: "FixedTCPPort", args: []string{"bind-tcp", itoa(testkit.FreePort(t))}, want: want("TCP bind", int(unix.EACCES), 0)},
				{name: "SignalOutside", args: []string{"signal", pid, itoa(int(unix.SIGUSR1))}, want: want("signals", int(unix.EPERM), 0)},
				{name: "UnixDatagramSocket", args: []string{"socket", "AF_UNIX", "SOCK_DGRAM", "0"}, want: want("unix datagram sockets", 0, int(unix.EACCES))},
			} {
				if got := f.runPlan(t, plan, f.in, tc.args...); got != tc.want {
					t.Errorf("%s: probe %v: got %d (%s), want %d (%s) as explain says:\n%s", tc.name, tc.args, got, errnoName(got), tc.want, errnoName(tc.want), plan)
				}
			}
		})
	}
}

// TestRunRefusesPlansThisKernelCannotKeep: below the minimum ABI the plan
// cannot keep the filesystem allow-list, and a plan for a newer kernel
// handles rights this one does not; Run refuses both before forking.
func TestRunRefusesPlansThisKernelCannotKeep(t *testing.T) {
	f := newFixture(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cmd := Command{Path: f.probe, Args: []string{f.probe, "exit", "0"}, Dir: f.in.Directory}
	caps := DetectCaps()
	caps.LandlockABI = MinLandlockABI - 1
	old, err := Build(f.in, caps)
	if !errors.Is(err, ErrLandlockTooOld) {
		t.Fatalf("Build for ABI %d: %v, want ErrLandlockTooOld", caps.LandlockABI, err)
	}
	if _, err := Run(context.Background(), old, cmd, log); !errors.Is(err, ErrLandlockTooOld) {
		t.Errorf("Run of a plan for ABI %d: %v, want ErrLandlockTooOld", caps.LandlockABI, err)
	}
	kernel := DetectCaps().LandlockABI
	newer := -1
	for v := kernel + 1; v < len(abiInfos); v++ {
		if abiInfos[v] != abiInfo(kernel) {
			newer = v
			break
		}
	}
	if newer < 0 {
		t.Logf("no Landlock ABI known to ocnix handles more than this kernel's %d; the newer-plan case cannot be made here", kernel)
		return
	}
	caps.LandlockABI = newer
	p, err := Build(f.in, caps)
	must(t, err)
	if _, err := Run(context.Background(), p, cmd, log); err == nil || !strings.Contains(err.Error(), "rebuild the plan here") {
		t.Errorf("Run of a plan for ABI %d on a kernel with %d: %v, want a refusal", newer, kernel, err)
	}
}
