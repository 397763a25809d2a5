package launcher

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

var (
	// instanceNameRe keeps names usable as a systemd unit fragment, a unix user
	// name fragment, a netns name and an nft table name at once.
	instanceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// userNameRe is the portable user name shape (useradd's default NAME_REGEX).
	userNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// reservedEnv are set by the launcher so that the instance's view of HOME, the
// XDG dirs and TMPDIR always lies inside its own stateDir. Letting a spec move
// them would point opencode at paths the sandbox does not grant.
// maxConfigContent leaves room for the name under MAX_ARG_STRLEN.
const maxConfigContent = 128*1024 - 64

var reservedEnv = map[string]string{
	"HOME":                    "stateDir",
	"PATH":                    "path",
	"TMPDIR":                  "stateDir",
	"XDG_CONFIG_HOME":         "stateDir",
	"XDG_DATA_HOME":           "stateDir",
	"XDG_STATE_HOME":          "stateDir",
	"XDG_CACHE_HOME":          "stateDir",
	"XDG_RUNTIME_DIR":         "stateDir",
	"OPENCODE_CONFIG":         "opencodeConfig",
	"OPENCODE_CONFIG_CONTENT": "opencodeConfig",
	"USER":                    "user",
	"LOGNAME":                 "user",
}

// flagsOwnedByLauncher may not appear in extraArgs: the launcher sets them
// from listen and logLevel, and a second copy would silently win or lose.
var flagsOwnedByLauncher = map[string]string{
	"--port":      "listen.port",
	"--hostname":  "listen.address",
	"--log-level": "logLevel",
	"--mdns":      "listen.address (mDNS would advertise the server on the LAN)",
}

var logLevels = map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR"}

func (s *Spec) applyDefaults() {
	if s.User == "" {
		s.User = UserPrefix + s.Name
	}
	if s.Group == "" {
		s.Group = s.User
	}
	if s.StateDir == "" {
		s.StateDir = DefaultStateDirBase + "/" + s.Name
	}
	if s.Listen.Address == "" {
		s.Listen.Address = DefaultListenAddress
	}
	if s.Listen.Port == -1 {
		s.Listen.Port = DefaultListenPort
	}
	if s.InitScriptTimeout == -1 {
		s.InitScriptTimeout = DefaultInitScriptTimeout
	}
	if s.Environment == nil {
		s.Environment = map[string]string{}
	}
	if s.OpencodeConfig == nil {
		s.OpencodeConfig = map[string]any{}
	}
}

func (s *Spec) validate(ps *Problems) {
	switch {
	case !instanceNameRe.MatchString(s.Name):
		ps.List.Add("name", "%q is not a valid instance name; use lower-case letters, digits, '-' and '_', starting with a letter or digit", s.Name)
	case len(UserPrefix)+len(s.Name) > maxUserNameLen:
		ps.List.Add("name", "%q is too long: the user %q must fit %d characters, so the name may have at most %d", s.Name, UserPrefix+s.Name, maxUserNameLen, maxUserNameLen-len(UserPrefix))
	}
	checkAccount(ps, "user", s.User)
	checkAccount(ps, "group", s.Group)

	dirOK := checkPath(ps, "directory", s.Directory)
	stateOK := checkPath(ps, "stateDir", s.StateDir)
	if dirOK && stateOK {
		switch {
		case s.Directory == s.StateDir:
			ps.List.Add("stateDir", "is the same as directory (%s); give the instance a separate state directory", s.Directory)
		case within(s.StateDir, s.Directory):
			ps.List.Add("stateDir", "%s lies inside directory %s; the project tree would expose opencode's state and secrets to the project, so move it out", s.StateDir, s.Directory)
		case within(s.Directory, s.StateDir):
			ps.List.Add("directory", "%s lies inside stateDir %s; move the project out of the state directory", s.Directory, s.StateDir)
		}
	}
	if s.Directory == "/" {
		ps.List.Add("directory", "is /, which would make the whole host writable to the instance; use the project's own directory")
	}
	if s.StateDir == "/" {
		ps.List.Add("stateDir", "is /; use a directory of its own such as %s/%s", DefaultStateDirBase, s.Name)
	}

	if _, err := netip.ParseAddr(s.Listen.Address); err != nil {
		ps.List.Add("listen.address", "%q is not an IP address; use a literal such as 127.0.0.1 or ::1 (the launcher never resolves names)", s.Listen.Address)
	}
	checkPort(ps, "listen.port", s.Listen.Port)

	for k, v := range s.Environment {
		key := "environment." + k
		if !envfile.NameRe.MatchString(k) {
			ps.List.Add(key, "is not a valid variable name; use letters, digits and '_', not starting with a digit")
		} else if owner, ok := reservedEnv[k]; ok {
			ps.List.Add(key, "is set by the launcher from %s and cannot be overridden", owner)
		}
		if strings.ContainsRune(v, 0) {
			ps.List.Add(key, "contains a NUL byte, which no environment can hold")
		}
	}
	if s.EnvironmentFile != "" && checkPath(ps, "environmentFile", s.EnvironmentFile) {
		checkEnvFilePlace(ps, s)
	}
	for i, p := range s.Path {
		checkPath(ps, fmt.Sprintf("path[%d]", i), p)
	}
	if s.LogLevel != "" {
		if _, ok := logLevels[s.LogLevel]; !ok {
			ps.List.Add("logLevel", "%q is not one of debug, info, warn, error (or null for opencode's default)", s.LogLevel)
		}
	}
	for i, a := range s.ExtraArgs {
		flag, _, _ := strings.Cut(a, "=")
		if owner, ok := flagsOwnedByLauncher[flag]; ok {
			ps.List.Add(fmt.Sprintf("extraArgs[%d]", i), "%q is set by the launcher; use %s instead", a, owner)
		}
		if strings.ContainsRune(a, 0) {
			ps.List.Add(fmt.Sprintf("extraArgs[%d]", i), "contains a NUL byte")
		}
	}
	if s.Model != "" || s.Provider != "" {
		if _, ok := s.OpencodeConfig["model"]; ok {
			ps.List.Add("model", "is set both here and in opencodeConfig.model; set it in one place")
		}
		if s.Provider != "" && s.Model == "" {
			ps.List.Add("provider", "is set without model; opencode selects a model as \"provider/model\", so set model too")
		}
		if s.Provider == "" && s.Model != "" && !strings.Contains(s.Model, "/") {
			ps.List.Add("model", "%q has no provider; write it as \"provider/model\" (e.g. \"anthropic/claude-sonnet-4-5\") or set provider", s.Model)
		}
		if strings.Contains(s.Provider, "/") {
			ps.List.Add("provider", "%q contains '/'; give the provider id alone, e.g. \"anthropic\"", s.Provider)
		}
	}

	// The kernel caps one environment string (MAX_ARG_STRLEN, 128 KiB).
	if n := len(configContent(composeConfig(s, sandbox.Plan{}))); n > maxConfigContent {
		ps.List.Add("opencodeConfig", "composes to %d bytes of JSON; at most %d fit in OPENCODE_CONFIG_CONTENT, which keeps project configs from overriding it", n, maxConfigContent)
	}

	for i, p := range s.Sandbox.ReadWritePaths {
		key := fmt.Sprintf("sandbox.readWritePaths[%d]", i)
		if checkPath(ps, key, p) && p == "/" {
			ps.List.Add(key, "is /, which would make the whole host writable to the instance")
		}
	}
	for i, p := range s.Sandbox.ReadOnlyPaths {
		checkPath(ps, fmt.Sprintf("sandbox.readOnlyPaths[%d]", i), p)
	}
	for i, p := range s.Sandbox.UnixSockets.Allow {
		key := fmt.Sprintf("sandbox.unixSockets.allow[%d]", i)
		if checkPath(ps, key, p) && p == "/" {
			ps.List.Add(key, "is /, which would allow every socket on the host; list the sockets or their directories")
		}
	}
	for i, p := range s.Sandbox.AllowBindPorts {
		checkPort(ps, fmt.Sprintf("sandbox.allowBindPorts[%d]", i), p)
	}

	for i, c := range s.NetworkIsolation.OutboundAllowCidrs {
		checkCIDR(ps, fmt.Sprintf("networkIsolation.outboundAllowCidrs[%d]", i), c)
	}
	if s.NetworkIsolation.Subnet != "" {
		key := "networkIsolation.subnet"
		p, err := netip.ParsePrefix(s.NetworkIsolation.Subnet)
		switch {
		case err != nil:
			ps.List.Add(key, "%q is not a CIDR such as 100.100.3.0/30", s.NetworkIsolation.Subnet)
		case !p.Addr().Is4() || p.Bits() != 30:
			ps.List.Add(key, "%q must be an IPv4 /30 (one address for each end of the veth pair)", s.NetworkIsolation.Subnet)
		case p.Masked() != p:
			ps.List.Add(key, "%q has host bits set; did you mean %s?", s.NetworkIsolation.Subnet, p.Masked())
		}
	}
	for i, n := range s.NetworkIsolation.Nameservers {
		if _, err := netip.ParseAddr(n); err != nil {
			ps.List.Add(fmt.Sprintf("networkIsolation.nameservers[%d]", i), "%q is not an IP address", n)
		}
	}
	for i, d := range s.NetworkIsolation.OutboundAllowDomains {
		if _, err := netpolicy.ParseDomain(d); err != nil {
			ps.List.Add(fmt.Sprintf("networkIsolation.outboundAllowDomains[%d]", i), "%s", err)
		}
	}
	if len(s.NetworkIsolation.OutboundAllowDomains) > 0 && s.Listen.Port == 53 {
		ps.List.Add("listen.port", "is 53, the port of the netns resolver that networkIsolation.outboundAllowDomains needs; choose another")
	}
	if s.PreInitScript != "" {
		checkPath(ps, "preInitScript", s.PreInitScript)
	}
	if s.PostInitScript != "" {
		checkPath(ps, "postInitScript", s.PostInitScript)
	}
	if s.InitScriptTimeout < 1 || s.InitScriptTimeout > 86400 {
		ps.List.Add("initScriptTimeout", "is %d seconds; use 1 to 86400", s.InitScriptTimeout)
	}
	switch {
	case len(s.Command) == 0:
		ps.List.Add("command", "is empty; set it to the opencode executable, e.g. [\"/nix/store/…-opencode/bin/opencode\"]")
	default:
		checkPath(ps, "command[0]", s.Command[0])
	}
}

func checkAccount(ps *Problems, key, name string) {
	if !userNameRe.MatchString(name) || len(name) > maxUserNameLen {
		ps.List.Add(key, "%q is not a valid user or group name (lower-case letters, digits, '-' and '_', at most %d characters)", name, maxUserNameLen)
	}
	if name == "root" {
		ps.List.Add(key, "is root; an instance must run as its own unprivileged account such as opencode-<name>")
	}
}

// checkPath requires an absolute, clean path: a relative or "..".-bearing path
// means something else depending on the cwd, which a sandbox rule must never do.
func checkPath(ps *Problems, key, p string) bool {
	switch {
	case p == "":
		ps.List.Add(key, "is empty; give an absolute path")
	case strings.ContainsAny(p, "\x00\n"):
		ps.List.Add(key, "%q contains a NUL or newline", p)
	case !filepath.IsAbs(p):
		ps.List.Add(key, "%q is relative; give an absolute path such as %q", p, "/"+strings.TrimPrefix(p, "./"))
	case hasDotDot(p):
		ps.List.Add(key, "%q contains '..'; give the path without it", p)
	case filepath.Clean(p) != p:
		ps.List.Add(key, "%q is not clean; write it as %q", p, filepath.Clean(p))
	default:
		return true
	}
	return false
}

// checkEnvFilePlace refuses an environmentFile inside a tree the instance
// can write. Root reads the file for the instance (run started as root), so
// the instance could swap it for a symlink to any root-only file; run
// refuses such a path at run time too (safefs.OpenTrustedPath), this says
// so at build time, from the spec alone.
func checkEnvFilePlace(ps *Problems, s *Spec) {
	writable := []struct{ key, dir string }{{"directory", s.Directory}, {"stateDir", s.StateDir}}
	for i, p := range s.Sandbox.ReadWritePaths {
		writable = append(writable, struct{ key, dir string }{fmt.Sprintf("sandbox.readWritePaths[%d]", i), p})
	}
	for _, w := range writable {
		if w.dir != "" && (s.EnvironmentFile == w.dir || within(s.EnvironmentFile, w.dir)) {
			ps.List.Add("environmentFile", "%s lies inside %s %s, which the instance can write: it could replace the file with a symlink to any file root can read, and run (as root) would load that into its environment; keep secrets in a root-owned directory such as /run/secrets or /etc/opencode", s.EnvironmentFile, w.key, w.dir)
			return
		}
	}
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func checkPort(ps *Problems, key string, port int) {
	if port < 1 || port > 65535 {
		ps.List.Add(key, "is %d; use a port from 1 to 65535", port)
	}
}

func checkCIDR(ps *Problems, key, c string) {
	p, err := netip.ParsePrefix(c)
	switch {
	case err != nil:
		ps.List.Add(key, "%q is not a CIDR; write it as address/prefix, e.g. 10.10.0.0/16 or fd00::/8", c)
	case p.Addr().Zone() != "":
		ps.List.Add(key, "%q has a zone; zones cannot be filtered", c)
	case p.Masked() != p:
		ps.List.Add(key, "%q has host bits set; did you mean %s?", c, p.Masked())
	}
}

// within reports whether p lies strictly inside dir.
func within(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// ServerLogLevel is the value for opencode's --log-level, which wants upper case.
func (s *Spec) ServerLogLevel() string { return logLevels[s.LogLevel] }
