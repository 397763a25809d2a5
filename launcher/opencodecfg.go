package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
