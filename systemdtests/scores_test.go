package systemdtests

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitScoreLimits is the highest `systemd-analyze security` exposure each kind of
// generated unit may have (issue 16). The scores and what each unit's hardening allows
// are in docs/nixos.md; lower a limit when a unit gets tighter, never raise it quietly.
var unitScoreLimits = []struct {
	kind  string
	match *regexp.Regexp // on the unit file name
	limit float64
}{
	{"proxy", regexp.MustCompile(`^opencode-.+-proxy\.service$`), 2.0},
	{"resolver", regexp.MustCompile(`^opencode-.+-dns\.service$`), 3.5},
	// Issue 16 asks for 5.0. Setup has a mount namespace of its own since the launcher
	// pins network namespaces in PID 1's (netpolicy's inHostMounts); what is left is root,
	// its 12 capabilities, the host network and /proc/sys/net (see service.nix).
	{"setup", regexp.MustCompile(`^opencode-.+-setup\.service$`), 4.2},
	{"server", regexp.MustCompile(`^opencode-[^.]+\.service$`), 2.0},
}

var overallRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+\.[0-9])`)

// TestUnitScores scores every committed unit with the host's systemd-analyze, offline
// (no container, no running systemd), and fails above its kind's limit. It needs only
// the systemd-analyze binary, not root or the tier.
func TestUnitScores(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian: apt-get install systemd): %v", err)
	}
	units, err := filepath.Glob("units/*/system/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no rendered units under systemdtests/units (%v); run systemdtests/render.sh", err)
	}
	seen := map[string]bool{}
	for _, u := range units {
		base := filepath.Base(u)
		kind, limit := "", 0.0
		for _, l := range unitScoreLimits {
			if l.match.MatchString(base) {
				kind, limit = l.kind, l.limit
				break
			}
		}
		if kind == "" {
			t.Errorf("%s: no score limit for this unit; add its kind to unitScoreLimits", u)
			continue
		}
		seen[kind] = true
		out, _ := exec.Command(analyze, "security", "--offline=true", "--no-pager", u).CombinedOutput()
		score, err := parseScore(string(out))
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		t.Logf("%-60s %-8s %.1f (limit %.1f)", u, kind, score, limit)
		if score > limit {
			t.Errorf("%s (%s): systemd-analyze security exposure %.1f is above the limit %.1f; its open items:\n%s",
				u, kind, score, limit, openItems(string(out)))
		}
	}
	for _, l := range unitScoreLimits {
		if !seen[l.kind] {
			t.Errorf("no rendered %s unit was scored; the fixtures should cover every kind", l.kind)
		}
	}
}

func parseScore(out string) (float64, error) {
	m := overallRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no overall exposure in systemd-analyze's output:\n%s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func openItems(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "✗") {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// TestParseScore keeps the parser honest about systemd-analyze's line.
func TestParseScore(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want float64
		ok   bool
	}{
		{"→ Overall exposure level for opencode-a.service: 9.6 UNSAFE 😨\n", 9.6, true},
		{"→ Overall exposure level for x.service: 1.7 OK 🙂", 1.7, true},
		{"Failed to load unit", 0, false},
	} {
		got, err := parseScore(tc.out)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseScore(%q) = %v, %v; want %v, ok=%v", tc.out, got, err, tc.want, tc.ok)
		}
	}
}
