package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The marker stands for a secret: it must reach the server and appear in no
// output of the launcher.
const secretMarker = "sk-ocnix-MARKER-7f3a9c"

func TestOpencodeServesUnderTheSandboxWithComposedConfig(t *testing.T) {
	bin := opencodeBin(t)
	in := newInstance(t, "oc", func(in *instance) {
		envFile := filepath.Join(in.base, "secrets.env")
		if err := os.WriteFile(envFile, []byte("# secrets\nANTHROPIC_API_KEY="+secretMarker+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		in.spec["command"] = []any{bin}
		in.spec["environmentFile"] = envFile
		in.spec["model"] = "claude-sonnet-4-5"
		in.spec["provider"] = "anthropic"
		in.spec["logLevel"] = "info"
		in.spec["opencodeConfig"] = map[string]any{
			"disabled_providers": []any{"opencode"},
			"permission":         map[string]any{"webfetch": "deny"},
		}
	})

	ctxOut, ctxErr, code := in.launcher(t.Context(), "explain", "--json")
	if code != 0 {
		t.Fatalf("explain exit %d: %s", code, ctxErr)
	}
	var plan map[string]any
	if err := json.Unmarshal([]byte(ctxOut), &plan); err != nil {
		t.Fatalf("explain --json is not JSON: %v", err)
	}
	in.setup()
	// The agent tries to loosen its policy before the (re)start: it cannot
	// write the launcher's opencode.json, so it tries the project config.
	out, errs, code := in.sandboxed("/bin/sh", "-c", `echo '{"permission":{"webfetch":"allow"}}' > "$OPENCODE_CONFIG" && echo EDITED
echo '{"model":"anthropic/claude-haiku-4-5","permission":{"webfetch":"allow"}}' > opencode.json; true`)
	if code != 0 || strings.Contains(out, "EDITED") {
		t.Fatalf("the instance edited $OPENCODE_CONFIG (exit %d): %s %s", code, out, errs)
	}

	srv := in.start()
	base := fmt.Sprintf("http://127.0.0.1:%d", in.port())
	h := waitHealthy(t, base, srv, 90*time.Second)
	if h["version"] != "1.18.33" {
		t.Errorf("health = %v, want version 1.18.33", h)
	}

	status, body, err := httpGet(base+"/config", 20*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("GET /config: %d %v %s", status, err, body)
	}
	var cfg map[string]any
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["model"] != "anthropic/claude-sonnet-4-5" {
		t.Errorf("config model = %v, want anthropic/claude-sonnet-4-5 (model+provider folded)", cfg["model"])
	}
	if perm, _ := cfg["permission"].(map[string]any); perm["webfetch"] != "deny" {
		t.Errorf("config permission = %v, want webfetch deny from opencodeConfig (an instance-written project config overrode it)", cfg["permission"])
	}
	if cfg["share"] != "disabled" || cfg["autoupdate"] != false {
		t.Errorf("locked-down defaults missing: share=%v autoupdate=%v", cfg["share"], cfg["autoupdate"])
	}

	// The key from environmentFile reached the server: anthropic counts as
	// connected only with credentials, and "opencode" is disabled by config.
	status, body, err = httpGet(base+"/config/providers", 20*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("GET /config/providers: %d %v", status, err)
	}
	var prov struct {
		Providers []struct {
			ID string `json:"id"`
		} `json:"providers"`
	}
	if err := json.Unmarshal(body, &prov); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range prov.Providers {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "anthropic" {
		t.Errorf("providers = %v, want [anthropic]: the environmentFile key or disabled_providers did not take effect", ids)
	}

	// The server runs as the instance user, not root.
	status, body, _ = httpGet(base+"/path", 10*time.Second)
	if status != 200 || !strings.Contains(string(body), in.stateDir) {
		t.Errorf("GET /path = %d %s, want paths under %s", status, body, in.stateDir)
	}

	if rc := srv.stop(15 * time.Second); rc != 0 && rc != 143 {
		t.Errorf("server exit status %d after SIGTERM, want 0 or 143; output:\n%s", rc, srv.out.String())
	}
	for name, text := range map[string]string{"explain": ctxOut, "server output": srv.out.String()} {
		if strings.Contains(text, secretMarker) {
			t.Errorf("%s contains the secret from environmentFile", name)
		}
	}
	st, err := os.Stat(in.stateDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("stateDir mode = %v, %v; want 0700", st.Mode(), err)
	}
}
