package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// configGitignore goes next to opencode.json. opencode writes a .gitignore
// into every config dir it sees and treats EROFS there as fatal (opencode
// gotcha C); it leaves an existing one alone. With the file in place the
// config dir may be made read-only later without breaking the server.
const configGitignore = "node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore\n"

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

// writeOpencodeConfig makes l.ConfigFile hold the composed opencode.json
// (0600) with a .gitignore next to it. It is idempotent: nothing is written
// when both already match. Setup calls it, and run may call it before
// starting the server so that a changed spec takes effect without setup.
//
// As root the files belong to the instance user; as the instance user they
// are created as that user. The config directory must exist (setup creates
// it). The write is atomic: the server never sees a half-written file.
func writeOpencodeConfig(s *Spec, l Layout) error {
	var own *owner
	if os.Geteuid() == 0 {
		id, err := lookupIdentity(s)
		if err != nil {
			return err
		}
		own = id.owner()
	}
	root, err := openStateRoot(l.StateDir, nil)
	if err != nil {
		return fmt.Errorf("write opencode.json: %w", err)
	}
	defer root.Close()
	_, err = ensureOpencodeConfig(root, s, l, own)
	return err
}

// ensureOpencodeConfig is writeOpencodeConfig on an open stateDir.
func ensureOpencodeConfig(root *stateRoot, s *Spec, l Layout, own *owner) (changed bool, err error) {
	data, err := opencodeConfigJSON(s)
	if err != nil {
		return false, err
	}
	dir, err := root.openDir(filepath.Dir(l.ConfigFile))
	if err != nil {
		return false, fmt.Errorf("write opencode.json: %w; run setup first", err)
	}
	defer dir.Close()
	c1, err := ensureFileAt(dir, filepath.Base(l.ConfigFile), data, 0o600, own)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", l.ConfigFile, err)
	}
	c2, err := ensureFileAt(dir, ".gitignore", []byte(configGitignore), 0o600, own)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", filepath.Join(filepath.Dir(l.ConfigFile), ".gitignore"), err)
	}
	return c1 || c2, nil
}
