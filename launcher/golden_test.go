package launcher

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenHost is a fixed host: Landlock ABI 7, libseccomp API 6, an FHS
// layout whose paths exist in a map, so the plan is the same on any machine.
func goldenHost(nixos bool) Host {
	fsys := fstest.MapFS{}
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib64", "etc", "dev/pts", "proc", "sys/fs/cgroup", "sys/devices/system/cpu",
		"srv/ocnix-demo/project", "var/lib/opencode/instance-state/demo", "opt/ocnix", "nix/store", "run/current-system/sw"} {
		fsys[d] = &fstest.MapFile{Mode: os.ModeDir | 0o755}
	}
	for _, f := range []string{"dev/null", "dev/zero", "dev/full", "dev/random", "dev/urandom", "dev/tty", "dev/ptmx", "opt/ocnix/opencode-bin"} {
		fsys[f] = &fstest.MapFile{Mode: 0o666}
	}
	layout := sandbox.LayoutFHS
	if nixos {
		layout = sandbox.LayoutNixOS
	}
	// A fixed resolv.conf: a spec without nameservers must not show this machine's.
	net := netpolicy.HostFactsFromResolvConf([]byte("nameserver 192.0.2.53\n"))
	uid := uint32(990) // the instance user's, fixed
	return Host{NixOS: nixos, Sandbox: sandbox.Caps{LandlockABI: 7, SeccompAPI: 6, Layout: layout, FS: fsys}, Net: net, UID: &uid}
}

// TestExplainGolden pins explain's output for the example spec: a change in
// what the sandbox or network enforces shows up as a diff in review.
func TestExplainGolden(t *testing.T) {
	tests := []struct {
		name, spec, golden string
		isolate            bool
	}{
		{"DemoText", "../examples/demo.json", "explain-demo.txt", false},
		{"DemoJSON", "../examples/demo.json", "explain-demo.json", false},
		{"IsolatedText", "../examples/demo.json", "explain-demo-isolated.txt", true},
		{"DomainsText", "../examples/demo.json", "explain-demo-domains.txt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadFile(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if tt.isolate {
				s.NetworkIsolation.Enable = true
				s.NetworkIsolation.OutboundAllowCidrs = []string{"10.10.0.0/16", "fd00::/8", "10.10.3.0/24"}
				s.NetworkIsolation.Nameservers = []string{"10.10.0.53"}
			}
			if tt.name == "DomainsText" {
				s.NetworkIsolation.OutboundAllowDomains = []string{"api.anthropic.com", "*.githubusercontent.com", "registry.npmjs.org:443"}
			}
			p, err := buildPlan(s, goldenHost(false), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			if filepath.Ext(tt.golden) == ".json" {
				if got, err = p.JSON(); err != nil {
					t.Fatal(err)
				}
			} else {
				got = []byte(p.String())
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run: go test ./launcher -run TestExplainGolden -update)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("explain output changed (-want +got); if intended, run go test ./launcher -run TestExplainGolden -update:\n%s", d)
			}
		})
	}
}

// TestOldKernelIsAHostFactNotASpecError: on a kernel below the minimum
// Landlock ABI, check still passes (it runs on Nix builders) and explain
// warns; run is refused by the sandbox itself.
func TestOldKernelIsAHostFactNotASpecError(t *testing.T) {
	s, err := loadFile("../examples/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	h := goldenHost(false)
	h.Sandbox.LandlockABI = 1
	p, err := buildPlan(s, h, nil)
	if err != nil {
		t.Fatalf("buildPlan on ABI 1 = %v, want a plan with a warning", err)
	}
	if len(p.Warnings) == 0 || !strings.Contains(strings.Join(p.Warnings, "\n"), "below the minimum") {
		t.Errorf("warnings = %v, want the Landlock minimum", p.Warnings)
	}
}
