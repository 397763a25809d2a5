package launcher

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNameServiceSocketsWarnForIsolatedInstances: issue 10 item 5. On
// ccade3b neither check nor explain said anything.
func TestNameServiceSocketsWarnForIsolatedInstances(t *testing.T) {
	tests := []struct {
		name     string
		isolated bool
		allow    []string
		want     []string // substrings of the warnings, in order; none when empty
	}{
		{"NscdSocket", true, []string{"/run/postgresql/.s.PGSQL.5432", "/run/nscd/socket"}, []string{"allow[1] /run/nscd/socket", "nscd"}},
		{"ResolvedVarlink", true, []string{"/run/systemd/resolve/io.systemd.Resolve"}, []string{"systemd-resolved"}},
		{"DBusSystemBus", true, []string{"/run/dbus/system_bus_socket"}, []string{"D-Bus"}},
		{"DirectoryCoveringNscd", true, []string{"/run/nscd"}, []string{"allow[0] /run/nscd lets", "/run/nscd/socket"}},
		{"PostgresOnlyIsQuiet", true, []string{"/run/postgresql/.s.PGSQL.5432", "/run/postgresql"}, nil},
		{"NotIsolatedIsQuiet", false, []string{"/run/nscd/socket"}, nil},
		{"SimilarPrefixIsQuiet", true, []string{"/run/nscd-other"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := specWith(t, func(m map[string]any) {
				m["sandbox"] = map[string]any{"unixSockets": map[string]any{"allow": tt.allow}}
				m["networkIsolation"] = map[string]any{"enable": tt.isolated}
			})
			path := filepath.Join(t.TempDir(), "spec.json")
			if err := os.WriteFile(path, spec, 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), []string{"check", "--config", path}, &stdout, &stderr); code != 0 {
				t.Fatalf("check exit %d: %s", code, stderr.String())
			}
			stdout.Reset()
			Main(context.Background(), []string{"explain", "--config", path}, &stdout, &bytes.Buffer{})
			for what, out := range map[string]string{"check": stderr.String(), "explain": stdout.String()} {
				has := strings.Contains(out, "bypass the instance's netns")
				if len(tt.want) == 0 {
					if has {
						t.Errorf("%s warns about %v:\n%s", what, tt.allow, out)
					}
					continue
				}
				for _, w := range tt.want {
					if !has || !strings.Contains(out, w) {
						t.Errorf("%s lacks a warning with %q:\n%s", what, w, out)
					}
				}
			}
		})
	}
}
