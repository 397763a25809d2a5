package launcher

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocnix/ocnix/internal/envfile"
)

func TestReadEnvFileMissingNamesPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.env")
	_, err := envfile.Read(p)
	if !errors.Is(err, envfile.ErrFile) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v", err)
	}
	if ExitCode(err) != ExitConfig {
		t.Errorf("exit code %d", ExitCode(err))
	}
}

func TestEnvFileCannotOverrideReserved(t *testing.T) {
	_, err := withEnvFile(nil, []envfile.Var{{Name: "HOME", Value: "/root", Line: 3}}, "/run/s.env")
	if err == nil || !strings.Contains(err.Error(), "line 3: HOME") || !errors.Is(err, envfile.ErrFile) {
		t.Fatalf("err = %v", err)
	}
}
