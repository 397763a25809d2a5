package launcher

import (
	"encoding/json"
	"errors"
	"github.com/ocnix/ocnix/sandbox"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const minimalSpec = `{"name":"web","directory":"/srv/web","command":["/nix/store/x-opencode/bin/opencode"]}`

// specWith returns the minimal spec with key set to the raw JSON value v.
func specWith(t *testing.T, mutate func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(minimalSpec), &m); err != nil {
		t.Fatal(err)
	}
	mutate(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMinimalSpecTakesSeedDefaults(t *testing.T) {
	s, err := parseSpec([]byte(minimalSpec))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Name:              "web",
		User:              "opencode-web",
		Group:             "opencode-web",
		Directory:         "/srv/web",
		StateDir:          "/var/lib/opencode/instance-state/web",
		Listen:            Listen{Address: "127.0.0.1", Port: 8080},
		Environment:       map[string]string{},
		OpencodeConfig:    map[string]any{},
		Command:           []string{"/nix/store/x-opencode/bin/opencode"},
		InitScriptTimeout: 300,
	}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

func TestParseDesignExample(t *testing.T) {
	// The example of DESIGN.md, verbatim apart from the elisions.
	const design = `{
  "name": "my-project", "user": "opencode-my-project", "group": "opencode-my-project",
  "directory": "/srv/my-project", "stateDir": "/var/lib/opencode/instance-state/my-project",
  "listen": { "address": "127.0.0.1", "port": 8787 },
  "environment": { "KEY": "value" }, "environmentFile": null,
  "path": ["/nix/store/abc-git/bin"], "logLevel": null, "model": null, "provider": null,
  "extraArgs": [],
  "sandbox": { "readWritePaths": [], "readOnlyPaths": [],
    "unixSockets": { "allow": ["/run/postgresql/.s.PGSQL.5432"] } },
  "networkIsolation": { "enable": false, "outboundAllowCidrs": [] },
  "preInitScript": null, "postInitScript": null, "opencodeConfig": {},
  "command": ["/nix/store/abc-opencode/bin/opencode"] }`
	s, err := parseSpec([]byte(design))
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen.Port != 8787 || s.Sandbox.UnixSockets.Allow[0] != "/run/postgresql/.s.PGSQL.5432" {
		t.Errorf("parsed %+v", s)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(m map[string]any)
		wantKey string
		wantMsg string
	}{
		{"UnknownTopLevelKeyIsRefused", func(m map[string]any) { m["sandbx"] = map[string]any{} }, "sandbx", "not a known key"},
		{"UnknownNestedKeyIsRefused", func(m map[string]any) {
			m["sandbox"] = map[string]any{"unixSockets": map[string]any{"alow": []any{}}}
		}, "sandbox.unixSockets.alow", "not a known key"},
		{"MissingDirectory", func(m map[string]any) { delete(m, "directory") }, "directory", "required"},
		{"OpencodeConfigTooLargeForTheEnvironment", func(m map[string]any) {
			m["opencodeConfig"] = map[string]any{"instructions": []any{strings.Repeat("x", 130*1024)}}
		}, "opencodeConfig", "OPENCODE_CONFIG_CONTENT"},
		{"ConfigContentIsReserved", func(m map[string]any) {
			m["environment"] = map[string]any{"OPENCODE_CONFIG_CONTENT": "{}"}
		}, "environment.OPENCODE_CONFIG_CONTENT", "set by the launcher"},
		{"MissingCommand", func(m map[string]any) { delete(m, "command") }, "command", "required"},
		{"EmptyCommand", func(m map[string]any) { m["command"] = []any{} }, "command", "empty"},
		{"RelativeCommand", func(m map[string]any) { m["command"] = []any{"opencode"} }, "command[0]", "relative"},
		{"WrongTypePort", func(m map[string]any) { m["listen"] = map[string]any{"port": "80"} }, "listen.port", "want a whole number"},
		{"PortZero", func(m map[string]any) { m["listen"] = map[string]any{"port": 0} }, "listen.port", "1 to 65535"},
		{"Port70000", func(m map[string]any) { m["listen"] = map[string]any{"port": 70000} }, "listen.port", "1 to 65535"},
		{"FractionalPort", func(m map[string]any) { m["listen"] = map[string]any{"port": 80.5} }, "listen.port", "whole number"},
		{"HostnameAsAddress", func(m map[string]any) { m["listen"] = map[string]any{"address": "localhost"} }, "listen.address", "not an IP address"},
		{"RelativeDirectory", func(m map[string]any) { m["directory"] = "srv/web" }, "directory", "relative"},
		{"DotDotInStateDir", func(m map[string]any) { m["stateDir"] = "/var/lib/../etc" }, "stateDir", "'..'"},
		{"UncleanPath", func(m map[string]any) { m["stateDir"] = "/var/lib//x/" }, "stateDir", "not clean"},
		{"StateDirEqualsDirectory", func(m map[string]any) { m["stateDir"] = "/srv/web" }, "stateDir", "same as directory"},
		{"StateDirInsideDirectory", func(m map[string]any) { m["stateDir"] = "/srv/web/.state" }, "stateDir", "inside directory"},
		{"DirectoryInsideStateDir", func(m map[string]any) { m["stateDir"] = "/srv" }, "directory", "inside stateDir"},
		{"RootReadWritePath", func(m map[string]any) {
			m["sandbox"] = map[string]any{"readWritePaths": []any{"/"}}
		}, "sandbox.readWritePaths[0]", "whole host"},
		{"BadCIDR", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"enable": true, "outboundAllowCidrs": []any{"10.0.0.0/33"}}
		}, "networkIsolation.outboundAllowCidrs[0]", "not a CIDR"},
		{"CIDRWithHostBits", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowCidrs": []any{"10.1.2.3/16"}}
		}, "networkIsolation.outboundAllowCidrs[0]", "did you mean 10.1.0.0/16"},
		{"BadV6CIDR", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowCidrs": []any{"fd00::/129"}}
		}, "networkIsolation.outboundAllowCidrs[0]", "not a CIDR"},
		{"SubnetNotSlash30", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"subnet": "100.64.0.0/24"}
		}, "networkIsolation.subnet", "/30"},
		{"LogLevelUpperCase", func(m map[string]any) { m["logLevel"] = "DEBUG" }, "logLevel", "not one of"},
		{"NameWithSpace", func(m map[string]any) { m["name"] = "my web" }, "name", "not a valid instance name"},
		{"NameTooLongForUser", func(m map[string]any) { m["name"] = strings.Repeat("a", 24) }, "name", "too long"},
		{"RootUser", func(m map[string]any) { m["user"] = "root" }, "user", "unprivileged"},
		{"ReservedEnvironment", func(m map[string]any) { m["environment"] = map[string]any{"HOME": "/root"} }, "environment.HOME", "set by the launcher"},
		{"EnvironmentNotString", func(m map[string]any) { m["environment"] = map[string]any{"N": 1} }, "environment.N", "want a string"},
		{"ExtraArgsPort", func(m map[string]any) { m["extraArgs"] = []any{"--port=9"} }, "extraArgs[0]", "listen.port"},
		{"ModelTwice", func(m map[string]any) {
			m["model"] = "a/b"
			m["opencodeConfig"] = map[string]any{"model": "c/d"}
		}, "model", "one place"},
		{"ModelWithoutProvider", func(m map[string]any) { m["model"] = "claude" }, "model", "provider/model"},
		{"ProviderWithoutModel", func(m map[string]any) { m["provider"] = "anthropic" }, "provider", "without model"},
		{"TimeoutZero", func(m map[string]any) { m["initScriptTimeout"] = 0 }, "initScriptTimeout", "1 to 86400"},
		{"RelativeScript", func(m map[string]any) { m["preInitScript"] = "init.sh" }, "preInitScript", "relative"},
		{"BindPortZero", func(m map[string]any) {
			m["sandbox"] = map[string]any{"allowBindPorts": []any{0}}
		}, "sandbox.allowBindPorts[0]", "1 to 65535"},
		{"DomainIsURL", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"enable": true, "outboundAllowDomains": []any{"api.anthropic.com", "https://api.openai.com"}}
		}, "networkIsolation.outboundAllowDomains[1]", "URL"},
		{"DomainWildcardInside", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{"api.*.com"}}
		}, "networkIsolation.outboundAllowDomains[0]", "whole first label"},
		{"DomainBadPort", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{"registry.npmjs.org:99999"}}
		}, "networkIsolation.outboundAllowDomains[0]", "1 to 65535"},
		{"DomainIsAddress", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{"10.1.2.3"}}
		}, "networkIsolation.outboundAllowDomains[0]", "outboundAllowCidrs"},
		{"DomainNotString", func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{42}}
		}, "networkIsolation.outboundAllowDomains[0]", "want a string"},
		{"DomainsWithListenPort53", func(m map[string]any) {
			m["listen"] = map[string]any{"port": 53}
			m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{"api.anthropic.com"}}
		}, "listen.port", "resolver"},
		{"EnvironmentFileInsideDirectory", func(m map[string]any) { m["environmentFile"] = "/srv/web/.env" }, "environmentFile", "inside directory /srv/web"},
		{"EnvironmentFileInsideStateDir", func(m map[string]any) {
			m["environmentFile"] = "/var/lib/opencode/instance-state/web/secrets.env"
		}, "environmentFile", "inside stateDir"},
		{"EnvironmentFileInsideReadWritePath", func(m map[string]any) {
			m["environmentFile"] = "/var/cache/web/app.env"
			m["sandbox"] = map[string]any{"readWritePaths": []any{"/tmp/x", "/var/cache/web"}}
		}, "environmentFile", "inside sandbox.readWritePaths[1]"},
		{"SocketListNotList", func(m map[string]any) {
			m["sandbox"] = map[string]any{"unixSockets": map[string]any{"allow": "/run/x"}}
		}, "sandbox.unixSockets.allow", "list of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSpec(specWith(t, tt.mutate))
			var ps *Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse error = %v, want *Problems", err)
			}
			if ps.Instance == "" && tt.name != "NameWithSpace" {
				t.Errorf("problems do not name the instance")
			}
			for _, p := range ps.List {
				if p.Key == tt.wantKey && strings.Contains(p.Msg, tt.wantMsg) {
					if !strings.Contains(err.Error(), "instance ") {
						t.Errorf("error %q does not name the instance", err)
					}
					return
				}
			}
			t.Errorf("no problem for key %q containing %q; got:\n%v", tt.wantKey, tt.wantMsg, err)
		})
	}
}

// TestEnvironmentFileOutsideWritableTreesIsAccepted is the twin of the
// EnvironmentFileInside* cases: a sibling that merely shares a prefix with
// directory is not inside it.
func TestEnvironmentFileOutsideWritableTreesIsAccepted(t *testing.T) {
	for _, p := range []string{"/run/secrets/web.env", "/srv/web.env", "/srv/web-secrets/app.env"} {
		if _, err := parseSpec(specWith(t, func(m map[string]any) { m["environmentFile"] = p })); err != nil {
			t.Errorf("environmentFile %s: %v", p, err)
		}
	}
}

func TestParseListsEveryProblemInOnePass(t *testing.T) {
	_, err := parseSpec([]byte(`{"name":"x","directory":"rel","stateDir":"/a/../b","listen":{"port":0},"command":[],"bogus":1}`))
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	var keys []string
	for _, p := range ps.List {
		keys = append(keys, p.Key)
	}
	want := []string{"bogus", "directory", "stateDir", "listen.port", "command"}
	if d := cmp.Diff(want, keys); d != "" {
		t.Errorf("problem keys (-want +got):\n%s", d)
	}
}

func TestParseDomainsEveryProblemKeyed(t *testing.T) {
	_, err := parseSpec(specWith(t, func(m map[string]any) {
		m["networkIsolation"] = map[string]any{"enable": true, "outboundAllowDomains": []any{"ok.example.com", "*", "a..b.com", "x.com:0", "*.github.com:22"}}
	}))
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	var keys []string
	for _, p := range ps.List {
		keys = append(keys, p.Key)
	}
	want := []string{"networkIsolation.outboundAllowDomains[1]", "networkIsolation.outboundAllowDomains[2]", "networkIsolation.outboundAllowDomains[3]"}
	if d := cmp.Diff(want, keys); d != "" {
		t.Errorf("problem keys (-want +got):\n%s\n%v", d, err)
	}
}

func TestParseWrongTypeIsReportedOnce(t *testing.T) {
	_, err := parseSpec([]byte(`{"name":"x","directory":"/srv/x","command":"/bin/opencode"}`))
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	if len(ps.List) != 1 || ps.List[0].Key != "command" || !strings.Contains(ps.List[0].Msg, "list of strings") {
		t.Errorf("problems = %v, want one about command's type", ps.List)
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Empty", ``, "empty or ends early"},
		{"Truncated", `{"name":`, "ends early"},
		{"TopLevelArray", `[]`, "want an object"},
		{"TrailingGarbage", `{} {}`, "trailing data"},
		{"BadToken", "{\n \"name\": x}", "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSpec([]byte(tt.in))
			if !errors.Is(err, ErrSpecSyntax) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrSpecSyntax containing %q", err, tt.want)
			}
			if ExitCode(err) != ExitSpecInvalid {
				t.Errorf("exit code %d, want %d", ExitCode(err), ExitSpecInvalid)
			}
		})
	}
}

func TestComposeConfigFoldsModelAndKeepsUserKeys(t *testing.T) {
	s, err := parseSpec(specWith(t, func(m map[string]any) {
		m["model"] = "claude-sonnet-4-5"
		m["provider"] = "anthropic"
		m["opencodeConfig"] = map[string]any{"share": "manual", "permission": map[string]any{"bash": "ask"}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := composeConfig(s, sandbox.Plan{})
	want := map[string]any{
		"$schema":    "https://opencode.ai/config.json",
		"autoupdate": false,
		"share":      "manual",
		"model":      "anthropic/claude-sonnet-4-5",
		"permission": map[string]any{"bash": "ask"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
}

func TestServerArgv(t *testing.T) {
	s, err := parseSpec(specWith(t, func(m map[string]any) {
		m["logLevel"] = "warn"
		m["extraArgs"] = []any{"--pure"}
		m["listen"] = map[string]any{"address": "::1", "port": 9000}
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/nix/store/x-opencode/bin/opencode", "serve", "--hostname", "::1", "--port", "9000", "--log-level", "WARN", "--pure"}
	if d := cmp.Diff(want, serverArgv(s)); d != "" {
		t.Errorf("argv (-want +got):\n%s", d)
	}
	// Isolated: the server binds the netns loopback, where the proxy connects.
	s.NetworkIsolation.Enable = true
	if got := serverArgv(s)[3]; got != "127.0.0.1" {
		t.Errorf("isolated --hostname = %q, want 127.0.0.1", got)
	}
	np, err := buildNetwork(s, Host{})
	if err != nil {
		t.Fatal(err)
	}
	if np.ProxyTarget != "127.0.0.1:9000" {
		t.Errorf("netpolicy proxy target %q does not match the server's listen address", np.ProxyTarget)
	}
}

func TestBaseEnvIsCleanAndEnvironmentOverridesDefaults(t *testing.T) {
	t.Setenv("SECRET_OF_CALLER", "leak")
	s, err := parseSpec(specWith(t, func(m map[string]any) {
		m["environment"] = map[string]any{"OPENCODE_DISABLE_MODELS_FETCH": "0", "FOO": "bar"}
		m["path"] = []any{"/nix/store/g-git/bin"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]EnvEntry{}
	for _, e := range baseEnv(s, Host{NixOS: true}, nil) {
		env[e.Name] = e
	}
	if _, ok := env["SECRET_OF_CALLER"]; ok {
		t.Error("caller's environment leaked into the instance")
	}
	if env["OPENCODE_DISABLE_MODELS_FETCH"].Value != "0" || env["FOO"].Value != "bar" {
		t.Errorf("environment not applied: %+v", env)
	}
	if got := env["PATH"].Value; got != "/nix/store/g-git/bin:/run/wrappers/bin:/run/current-system/sw/bin" {
		t.Errorf("PATH = %q", got)
	}
	if env["HOME"].Value != s.StateDir || env["TMPDIR"].Value != s.StateDir+"/tmp" {
		t.Errorf("HOME/TMPDIR not under stateDir: %+v %+v", env["HOME"], env["TMPDIR"])
	}
}

func TestDomainsWithoutIsolationWarn(t *testing.T) {
	s, err := parseSpec(specWith(t, func(m map[string]any) {
		m["networkIsolation"] = map[string]any{"outboundAllowDomains": []any{"api.anthropic.com"}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPlan(s, goldenHost(false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "outboundAllowDomains is set but networkIsolation.enable is false") {
		t.Errorf("warnings = %v", p.Warnings)
	}
	if p.Network.DNS != nil {
		t.Errorf("a non-isolated instance got a resolver plan")
	}
}

func TestDomainsMakeNameserversUpstreams(t *testing.T) {
	// Without domains a loopback nameserver cannot work from the netns;
	// with them it is the resolver's upstream, queried from the host.
	mk := func(domains []any) []byte {
		return specWith(t, func(m map[string]any) {
			m["networkIsolation"] = map[string]any{"enable": true, "nameservers": []any{"127.0.0.53"}, "outboundAllowDomains": domains}
		})
	}
	// Refused by check itself: the network layer's problems are the spec's.
	_, err := parseSpec(mk(nil))
	var ps *Problems
	if !errors.As(err, &ps) || !ps.List.Has("networkIsolation.nameservers[0]") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("loopback nameserver without domains: %v, want a problem keyed networkIsolation.nameservers[0]", err)
	}
	s, err := parseSpec(mk([]any{"api.anthropic.com"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPlan(s, goldenHost(false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Network.DNS == nil || len(p.Network.DNS.Upstreams) != 1 || p.Network.DNS.Upstreams[0].String() != "127.0.0.53:53" {
		t.Errorf("resolver plan = %+v", p.Network.DNS)
	}
}

// TestCheckReportsEveryLayerInOnePass: a spec with a problem for the spec
// parser, one only the sandbox knows and one only the network knows gets all
// three from one Parse (one `check`), keyed in the spec's terms.
func TestCheckReportsEveryLayerInOnePass(t *testing.T) {
	_, err := parseSpec(specWith(t, func(m map[string]any) {
		m["logLevel"] = "loud"
		m["sandbox"] = map[string]any{"readWritePaths": []any{"/srv/shared"}, "readOnlyPaths": []any{"/srv/shared/ro"}}
		m["networkIsolation"] = map[string]any{"enable": true, "nameservers": []any{"127.0.0.53"}}
	}))
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse = %v, want *Problems", err)
	}
	for _, key := range []string{"logLevel", "sandbox.readOnlyPaths[0]", "networkIsolation.nameservers[0]"} {
		if !ps.List.Has(key) {
			t.Errorf("no problem keyed %s in:\n%v", key, err)
		}
	}
	if n := strings.Count(err.Error(), "instance \""); n != 1 {
		t.Errorf("the instance is named %d times, want once:\n%v", n, err)
	}
}
