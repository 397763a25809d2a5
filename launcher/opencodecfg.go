package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/ocnix/ocnix/sandbox"
)

// renderConfig renders the composed opencode.json. encoding/json sorts map
// keys, so the same spec always gives the same bytes and an unchanged config
// is not rewritten.
//
// opencode never needs to write the file: it writes a .gitignore into
// config *directories* (the global one in stateDir stays writable), and the
// "$schema" rewrite does not apply because the composed config always has
// one; both tolerate EACCES anyway.
func renderConfig(cfg map[string]any) ([]byte, error) {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render opencode.json: %w", err)
	}
	return append(b, '\n'), nil
}

// errConfigStale means opencode.json is not what the spec composes.
var errConfigStale = errors.New("opencode.json does not match the spec")

// checkOpencodeConfig makes run and preflight refuse a server whose
// opencode.json is not the plan's: missing, changed since (the spec was
// edited and setup did not run), or not root's. run never writes it, so
// that run as the instance user and run as root behave the same.
func checkOpencodeConfig(sys applier, p *Plan) error {
	f, err := p.Setup.configFile()
	if err != nil {
		return err
	}
	got, err := sys.readConfig(f)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, f.Content) {
		return fmt.Errorf("%s: %w (the spec changed since the last setup); run setup", f.Path, errConfigStale)
	}
	return nil
}

// sandboxPermissions derives opencode's path permissions from the Landlock
// rules, so that no tool call waits on a prompt whose answer the kernel has
// already fixed: opencode 1.18.33 asks "external_directory" (default "ask")
// before a tool touches a path outside the project, and an unattended server
// then hangs until a human answers. An approval cannot grant what Landlock
// denies, and a refusal is pointless for what it grants, so: every directory
// the sandbox lets the instance read is "allow", the rest "deny".
//
// opencode asks with the pattern "<dir>/*", dir being the path for a
// directory and its parent for a file, and its "*" also matches "/", so
// "<dir>/*" covers the whole tree. A file grant (say /etc/resolv.conf) thus
// allows its parent's pattern: Landlock still refuses the other files there,
// and that refusal reaches the model as a tool error, not a hang. opencode
// takes the last matching rule; encoding/json writes keys sorted, and "*"
// sorts before every absolute path, so the catch-all deny comes first.
//
// read "*" allow replaces opencode's "ask" for *.env files: the sandbox
// decides what the agent may read (bash's cat reads them anyway). The
// operator's opencodeConfig is merged over all of this and wins.
//
// The launcher's own dir is left out: it appears in the Landlock rules only
// once setup has made it, and the config must not change with that.
func sandboxPermissions(sb sandbox.Plan, launcherDir string) map[string]any {
	ext := map[string]any{"*": "deny"}
	for _, r := range sb.Landlock.Paths {
		if r.Kind == sandbox.KindSocket || r.Path == launcherDir || r.Rights&ll.AccessFSReadFile == 0 {
			continue
		}
		dir := r.Path
		if r.File {
			dir = filepath.Dir(r.Path)
		}
		ext[strings.TrimSuffix(dir, "/")+"/*"] = "allow"
	}
	if len(sb.Landlock.Paths) == 0 {
		return nil // no sandbox plan (explain on a kernel without Landlock): derive nothing
	}
	return map[string]any{"permission": map[string]any{
		"external_directory": ext,
		"read":               map[string]any{"*": "allow"},
	}}
}
