// Package launcher holds the opencode-launcher CLI, the instance spec and the
// orchestration of check, explain, setup, run and teardown.
package launcher

// Spec is one instance, as the Nix module writes it (DESIGN.md, "The contract").
// Key names mirror the Nix option names. Optional keys that are absent or null
// take the defaults documented in README.md; unknown keys are an error, because a
// typo must never silently weaken a sandbox.
type Spec struct {
	Name              string            `json:"name"`
	User              string            `json:"user"`
	Group             string            `json:"group"`
	Directory         string            `json:"directory"`
	StateDir          string            `json:"stateDir"`
	Listen            Listen            `json:"listen"`
	Environment       map[string]string `json:"environment"`
	EnvironmentFile   string            `json:"environmentFile,omitempty"`
	Path              []string          `json:"path"`
	LogLevel          string            `json:"logLevel,omitempty"`
	Model             string            `json:"model,omitempty"`
	Provider          string            `json:"provider,omitempty"`
	ExtraArgs         []string          `json:"extraArgs"`
	Sandbox           SandboxSpec       `json:"sandbox"`
	NetworkIsolation  NetworkSpec       `json:"networkIsolation"`
	PreInitScript     string            `json:"preInitScript,omitempty"`
	PostInitScript    string            `json:"postInitScript,omitempty"`
	OpencodeConfig    map[string]any    `json:"opencodeConfig"`
	Command           []string          `json:"command"`
	InitScriptTimeout int               `json:"initScriptTimeout"`
}

// Listen is where the server is reachable, on the host.
type Listen struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// SandboxSpec is the filesystem and socket allowance of an instance.
type SandboxSpec struct {
	ReadWritePaths []string    `json:"readWritePaths"`
	ReadOnlyPaths  []string    `json:"readOnlyPaths"`
	UnixSockets    UnixSockets `json:"unixSockets"`
	AllowBindPorts []int       `json:"allowBindPorts"`
}

// UnixSockets is the allow-list for connect() to pathname unix sockets.
type UnixSockets struct {
	Allow []string `json:"allow"`
}

// NetworkSpec is the egress policy of an instance.
type NetworkSpec struct {
	Enable             bool     `json:"enable"`
	OutboundAllowCidrs []string `json:"outboundAllowCidrs"`
	Subnet             string   `json:"subnet,omitempty"`
	Nameservers        []string `json:"nameservers"`
	// OutboundAllowDomains are host names (exact, "*.suffix", optional
	// ":port"; 80 and 443 without) the instance may reach through the
	// resolver of `opencode-launcher dns`.
	OutboundAllowDomains []string `json:"outboundAllowDomains"`
}

// Defaults that the seed README promises and that the Nix module also uses.
const (
	DefaultListenAddress     = "127.0.0.1"
	DefaultListenPort        = 8080
	DefaultStateDirBase      = "/var/lib/opencode/instance-state"
	DefaultInitScriptTimeout = 300 // seconds
	UserPrefix               = "opencode-"
	maxUserNameLen           = 32
)
