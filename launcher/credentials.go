package launcher

import (
	"errors"
	"os"
	"path/filepath"
)

// EnvFileCredential is the systemd credential id under which a unit passes
// environmentFile to run: LoadCredential=environmentFile:<the spec's path>.
// The NixOS module does this for the server, so the file can stay root-only
// while run, started as the instance user, reads systemd's copy, and one
// spec serves the server, setup (root, reads the file itself) and explain.
const EnvFileCredential = "environmentFile"

// envFileSource is the file run reads environmentFile's variables from:
// $CREDENTIALS_DIRECTORY/<credential> when systemd set that directory (an
// absolute path) and the credential is in it, else the spec's path. A unit
// without LoadCredential= has no CREDENTIALS_DIRECTORY, and a directory
// without this credential (another unit's credentials) falls back to the
// spec's path, whose errors then name it.
//
// CREDENTIALS_DIRECTORY comes from whoever starts run: systemd, or root or
// the instance user by hand, who could as well point the spec anywhere. The
// file is read like environmentFile itself (envfile.Read: as root only a
// root-owned file on a root-owned path).
func envFileSource(specPath, credential, credDir string) string {
	if specPath == "" || credential == "" || credDir == "" || !filepath.IsAbs(credDir) {
		return specPath
	}
	c := filepath.Join(credDir, credential)
	if _, err := os.Lstat(c); errors.Is(err, os.ErrNotExist) {
		return specPath
	}
	return c
}
