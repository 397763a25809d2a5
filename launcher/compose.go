package launcher

import (
	"encoding/json"

	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// Layout is where an instance keeps its state. Everything opencode writes lives
// under stateDir, so that one Landlock rule covers it and instances never share
// a data dir (opencode crashes when two servers create one DB at once).
type Layout struct {
	StateDir string `json:"stateDir"`
	Data     string `json:"data"`
	Config   string `json:"config"`
	State    string `json:"state"`
	Cache    string `json:"cache"`
	Tmp      string `json:"tmp"`
	// Private is the launcher's root-owned directory for this instance
	// (privdir.go): what run and setup trust must not be instance-writable.
	Private    string `json:"private"`
	ConfigFile string `json:"configFile"` // in Private; the server reads it
}

// layoutFor derives the state layout from the spec.
func layoutFor(s *Spec) Layout {
	d := s.StateDir
	return Layout{
		StateDir:   d,
		Data:       filepath.Join(d, "data"),
		Config:     filepath.Join(d, "config"),
		State:      filepath.Join(d, "state"),
		Cache:      filepath.Join(d, "cache"),
		Tmp:        filepath.Join(d, "tmp"),
		Private:    privateDirFor(s.Name),
		ConfigFile: filepath.Join(privateDirFor(s.Name), "opencode.json"),
	}
}

// Dirs lists the directories setup creates in stateDir, parents first.
// config/opencode is opencode's own (global) config dir; it stays writable
// for opencode, and the policy file is not in it. Its node_modules and
// PluginLock (pluginLockJSON) make opencode skip the npm install of
// @opencode-ai/plugin it otherwise starts in every writable config dir.
func (l Layout) Dirs() []string {
	return []string{l.StateDir, l.Data, l.Config, filepath.Join(l.Config, "opencode"), filepath.Join(l.Config, "opencode", "node_modules"), l.State, l.Cache, l.Tmp}
}

// PluginLock is the package-lock.json setup writes in opencode's global
// config dir (pluginLockJSON).
func (l Layout) PluginLock() string { return filepath.Join(l.Config, "opencode", "package-lock.json") }

// pluginLockJSON stops opencode 1.18.33's runtime download (64 MB into
// config/opencode/node_modules plus 31 MB of npm cache, from the registry,
// on every first start): Npm.install returns early when node_modules exists
// and the lock's root package lists every wanted dependency, and the only
// one it adds itself is @opencode-ai/plugin, which serve does not need
// (only local plugin files and custom tools import it).
const pluginLockJSON = `{"name":"opencode-config","lockfileVersion":3,"requires":true,"packages":{"":{"dependencies":{"@opencode-ai/plugin":"*"}}}}
`

// Host is what the plan needs to know about the machine, detected once and
// passed in so that the plan stays a pure function that tests can drive.
type Host struct {
	NixOS   bool         `json:"nixos"`
	Sandbox sandbox.Caps `json:"sandbox"`
	Scripts ScriptFacts  `json:"scripts,omitempty"`
	// Net is what the network plan takes from the host (its resolv.conf);
	// NetErr says why it could not be read.
	Net    netpolicy.HostFacts `json:"net"`
	NetErr string              `json:"netError,omitempty"`
	// UID is the instance user's uid on this host, nil when it does not
	// exist here: the network plan's peer-guard listener needs it.
	UID *uint32 `json:"uid,omitempty"`
	// EphemeralPorts is net.ipv4.ip_local_port_range ([0 0]: unknown).
	EphemeralPorts [2]int `json:"ephemeralPorts"`
}

// lockdownEnv are opencode's switches for network features an isolated agent
// server should not use by default: they phone home or download code. Each can
// be turned back on through `environment`.
var lockdownEnv = []EnvEntry{
	{Name: "OPENCODE_DISABLE_AUTOUPDATE", Value: "1", Source: "default"},
	{Name: "OPENCODE_DISABLE_SHARE", Value: "1", Source: "default"},
	{Name: "OPENCODE_DISABLE_MODELS_FETCH", Value: "1", Source: "default"},
	{Name: "OPENCODE_DISABLE_LSP_DOWNLOAD", Value: "1", Source: "default"},
	// Plugins named in the config are npm-installed into the cache at
	// start; pure skips them (set OPENCODE_PURE=0 to use them).
	{Name: "OPENCODE_PURE", Value: "1", Source: "default"},
	{Name: "OPENCODE_DISABLE_DEFAULT_PLUGINS", Value: "1", Source: "default"},
}

// configDefaults sit under opencodeConfig: the package is immutable, so
// autoupdate can only fail, and sharing uploads sessions to a third party.
func configDefaults() map[string]any {
	return map[string]any{
		"$schema":    "https://opencode.ai/config.json",
		"autoupdate": false,
		"share":      "disabled",
	}
}

// EnvEntry is one variable of the composed environment. A Plan holds only the
// entries known without reading environmentFile; run adds the file's at start.
type EnvEntry struct {
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Source string `json:"source"` // launcher, default, environment, environmentFile
}

// baseEnv is the environment the instance starts from, before environmentFile:
// nothing of the caller's environment leaks in.
func baseEnv(s *Spec, h Host, cfg map[string]any) []EnvEntry {
	l := layoutFor(s)
	env := []EnvEntry{
		{Name: "HOME", Value: s.StateDir, Source: "launcher"},
		{Name: "USER", Value: s.User, Source: "launcher"},
		{Name: "LOGNAME", Value: s.User, Source: "launcher"},
		{Name: "PATH", Value: strings.Join(searchPath(s, h), ":"), Source: "launcher"},
		{Name: "LANG", Value: "C.UTF-8", Source: "default"},
		{Name: "TMPDIR", Value: l.Tmp, Source: "launcher"},
		{Name: "XDG_CONFIG_HOME", Value: l.Config, Source: "launcher"},
		{Name: "XDG_DATA_HOME", Value: l.Data, Source: "launcher"},
		{Name: "XDG_STATE_HOME", Value: l.State, Source: "launcher"},
		{Name: "XDG_CACHE_HOME", Value: l.Cache, Source: "launcher"},
		{Name: "OPENCODE_CONFIG", Value: l.ConfigFile, Source: "launcher"},
		// opencode merges project configs (opencode.json in directory, which
		// the agent writes) and .opencode/ dirs over OPENCODE_CONFIG; the
		// content layer is merged after them, so the operator's keys win
		// and a project can only add what the operator left unset.
		{Name: "OPENCODE_CONFIG_CONTENT", Value: configContent(cfg), Source: "launcher"},
	}
	env = append(env, lockdownEnv...)
	keys := make([]string, 0, len(s.Environment))
	for k := range s.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = setEnv(env, EnvEntry{Name: k, Value: s.Environment[k], Source: "environment"})
	}
	return env
}

// withEnvFile layers environmentFile assignments over env. Reserved names are
// refused: a secrets file must not be able to move HOME out of the sandbox.
func withEnvFile(env []EnvEntry, vars []envfile.Var, path string) ([]EnvEntry, error) {
	for _, v := range vars {
		if owner, ok := reservedEnv[v.Name]; ok {
			return nil, &envFileReservedError{path: path, line: v.Line, name: v.Name, owner: owner}
		}
		env = setEnv(env, EnvEntry{Name: v.Name, Value: v.Value, Source: "environmentFile"})
	}
	return env, nil
}

type envFileReservedError struct {
	path, name, owner string
	line              int
}

func (e *envFileReservedError) Error() string {
	return "environmentFile " + e.path + ": line " + strconv.Itoa(e.line) + ": " + e.name + " is set by the launcher from " + e.owner + " and cannot be overridden"
}

func (e *envFileReservedError) Unwrap() error { return envfile.ErrFile }

func setEnv(env []EnvEntry, e EnvEntry) []EnvEntry {
	for i := range env {
		if env[i].Name == e.Name {
			env[i] = e
			return env
		}
	}
	return append(env, e)
}

// environ renders entries as KEY=VALUE for exec.
func environ(env []EnvEntry) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

// searchPath is `path` first, then the system baseline of this kind of host.
func searchPath(s *Spec, h Host) []string {
	out := append([]string(nil), s.Path...)
	if h.NixOS {
		return append(out, "/run/wrappers/bin", "/run/current-system/sw/bin")
	}
	return append(out, "/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")
}

// configContent is the composed config as one line of JSON.
func configContent(cfg map[string]any) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "{}" // opencodeConfig came from JSON, so it always marshals
	}
	return string(b)
}

// composeConfig is the opencode.json content: ocnix's locked-down defaults
// and the permissions derived from the sandbox plan (sandboxPermissions),
// then opencodeConfig over them (objects merge, other values replace), then
// model and provider folded in as opencode expects ("provider/model").
func composeConfig(s *Spec, sb sandbox.Plan) map[string]any {
	cfg := mergeJSON(configDefaults(), sandboxPermissions(sb, privateDirFor(s.Name)))
	cfg = mergeJSON(cfg, s.OpencodeConfig)
	if s.Model != "" {
		m := s.Model
		if s.Provider != "" {
			m = s.Provider + "/" + s.Model
		}
		cfg["model"] = m
	}
	return cfg
}

func mergeJSON(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeJSON(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// serverArgv is command + serve flags + log level + extraArgs (DESIGN.md).
//
// With network isolation the server listens on the loopback of its own
// netns, where systemd-socket-proxyd (netpolicy.Plan.ProxyTarget) reaches it;
// the host side listens on listen.address. A host address such as
// 192.168.1.10 does not exist inside the netns, so it cannot be bound there.
func serverArgv(s *Spec) []string {
	host := s.Listen.Address
	if s.NetworkIsolation.Enable {
		host = isolatedListenHost
	}
	argv := append([]string(nil), s.Command...)
	argv = append(argv, "serve", "--hostname", host, "--port", strconv.Itoa(s.Listen.Port))
	if lvl := s.ServerLogLevel(); lvl != "" {
		argv = append(argv, "--log-level", lvl)
	}
	return append(argv, s.ExtraArgs...)
}

// isolatedListenHost matches netpolicy's ProxyTarget.
const isolatedListenHost = "127.0.0.1"
