package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// opencodeConfigJSON renders the composed opencode.json. encoding/json sorts
// map keys, so the same spec always gives the same bytes and an unchanged
// config is not rewritten.
func opencodeConfigJSON(s *Spec) ([]byte, error) {
	b, err := json.MarshalIndent(ComposeConfig(s), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render opencode.json: %w", err)
	}
	return append(b, '\n'), nil
}

// ensureOpencodeConfig makes opencode.json in the private directory hold the
// composed config, root:gid 0640, atomically (the server never sees a
// half-written file) and only when something differs.
//
// opencode never needs to write it: it writes a .gitignore into config
// *directories* (the global one in stateDir stays writable), and the
// "$schema" rewrite does not apply because the composed config always has
// one; both tolerate EACCES anyway.
func ensureOpencodeConfig(priv *os.File, s *Spec, gid int) (changed bool, err error) {
	data, err := opencodeConfigJSON(s)
	if err != nil {
		return false, err
	}
	changed, err = ensureFileAt(priv, "opencode.json", data, privateReadMode, &owner{uid: 0, gid: gid})
	if err != nil {
		return false, fmt.Errorf("write %s: %w", filepath.Join(priv.Name(), "opencode.json"), err)
	}
	return changed, nil
}

// errConfigStale means opencode.json is not what the spec composes.
var errConfigStale = errors.New("opencode.json does not match the spec")

// checkOpencodeConfig makes run refuse a server whose opencode.json is not
// the one setup would write for this spec: missing, changed since (the spec
// was edited and setup did not run), or not root's. run never writes it,
// so that run as the instance user and run as root behave the same.
func checkOpencodeConfig(s *Spec, l Layout) error {
	want, err := opencodeConfigJSON(s)
	if err != nil {
		return err
	}
	priv, err := openPrivateDir(l.Private, -1)
	if err != nil {
		return err
	}
	defer priv.Close()
	got, err := readTrustedFile(priv, filepath.Base(l.ConfigFile))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %w (the spec changed since the last setup); run setup", l.ConfigFile, errConfigStale)
	}
	return nil
}
