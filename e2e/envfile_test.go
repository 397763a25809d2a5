//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEnvironmentFileSwappedForASymlinkIsNotLoaded: environmentFile sits in
// a directory the instance user owns (a common mistake), and the instance
// swaps the file for a symlink to a root-only file. run, started as root,
// must refuse it (exit 78, naming the instance, the key and the path) and
// not put the root-only content into the sandbox's environment. Twins: the
// same file in a root-owned directory loads; a FIFO there does not hang run;
// setup refuses the instance-owned path before anything runs.
func TestEnvironmentFileSwappedForASymlinkIsNotLoaded(t *testing.T) {
	in := setupInstance(t)
	in.mustSetup()

	const marker = "ocnix-root-only-b7e2"
	rootOnly := filepath.Join(in.base, "root-only")
	in.mkdir(rootOnly, false)
	if err := os.Chmod(rootOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(rootOnly, "secret")
	if err := os.WriteFile(secret, []byte("STOLEN="+marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := lookupUser(t, in.user)
	userDir := filepath.Join(in.base, "user-secrets")
	in.mkdir(userDir, true)
	userFile := filepath.Join(userDir, "app.env")
	// What the instance does: its own file becomes a link to root's.
	if err := os.Symlink(secret, userFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(userFile, uid, gid); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(in.base, "etc")
	in.mkdir(etc, false)
	goodFile := filepath.Join(etc, "app.env")
	if err := os.WriteFile(goodFile, []byte("API_TOKEN=ok-from-root-owned-dir\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(etc, "fifo.env")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	runEnv := func(t *testing.T, envFile string) (string, string, int) {
		t.Helper()
		in.set("environmentFile", envFile)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		out, errs, code := in.launcher(ctx, "run", "--", "/usr/bin/env")
		if ctx.Err() != nil {
			t.Fatalf("run with environmentFile %s did not finish within %v", envFile, time.Since(start).Round(time.Second))
		}
		return out, errs, code
	}
	t.Run("RegularFileInRootOwnedDirLoads", func(t *testing.T) {
		out, errs, code := runEnv(t, goodFile)
		if code != 0 || !strings.Contains(out, "API_TOKEN=ok-from-root-owned-dir\n") {
			t.Fatalf("run -- env: exit %d, stdout lacks API_TOKEN\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
	})
	for _, c := range []struct{ name, path, want string }{
		{"SymlinkInInstanceOwnedDirIsRefused", userFile, "owned by uid"},
		{"FIFOIsRefusedWithoutHanging", fifo, "FIFO"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := runEnv(t, c.path)
			if strings.Contains(out+errs, marker) {
				t.Fatalf("the root-only file reached the sandbox:\n%s%s", out, errs)
			}
			for _, w := range []string{`instance "` + in.name + `"`, "environmentFile " + c.path, c.want} {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if code != 78 {
				t.Errorf("run exit %d, want 78 (environmentFile refused)\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
		})
	}
	t.Run("SetupRefusesItToo", func(t *testing.T) {
		in.set("environmentFile", userFile)
		code, out := in.runSetup()
		if code != 78 || !strings.Contains(out, "environmentFile "+userFile) || strings.Contains(out, marker) {
			t.Errorf("setup with an instance-owned environmentFile: exit %d, want 78 naming environmentFile %s:\n%s", code, userFile, out)
		}
	})
}

// TestSetupRefusesAnInitScriptTheInstanceCanSwap: setup reads init scripts
// as root for their digest. A script in a tree the instance writes could be
// swapped between the digest and the run (so the stamp would not describe
// what ran) or be a link that makes root read a root-only file: setup
// refuses it before running anything. The twin, the same script in a
// root-owned directory, runs.
func TestSetupRefusesAnInitScriptTheInstanceCanSwap(t *testing.T) {
	in := setupInstance(t)
	userDir := filepath.Join(in.base, "user-scripts")
	in.mkdir(userDir, true)
	body := "#!/bin/sh\necho ran >> " + filepath.Join(in.dir, "ran") + "\n"
	swappable := filepath.Join(userDir, "pre.sh")
	if err := os.WriteFile(swappable, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	in.set("preInitScript", swappable)
	code, out := in.runSetup()
	if code == 0 || !strings.Contains(out, "preInitScript "+swappable) || !strings.Contains(out, "owned by uid") {
		t.Errorf("setup with a preInitScript in an instance-owned directory: exit %d, want a refusal naming preInitScript %s:\n%s", code, swappable, out)
	}
	if got := in.read(filepath.Join(in.dir, "ran")); got != "" {
		t.Errorf("the refused script ran: %q", got)
	}
	in.set("preInitScript", in.script("pre", body))
	in.mustSetup()
	if got := in.read(filepath.Join(in.dir, "ran")); got != "ran\n" {
		t.Errorf("the root-owned script's output = %q, want one run", got)
	}
}

// TestEnvironmentFileFromTheUnitsCredential: one spec serves every unit. The
// server's unit passes environmentFile with
// LoadCredential=environmentFile:<path>, and run reads systemd's copy in
// $CREDENTIALS_DIRECTORY instead of the spec's (root-only) path; without
// that directory, or without the credential in it, run reads the spec's
// path. Both files are real here, with different values, so the output says
// which one run read.
func TestEnvironmentFileFromTheUnitsCredential(t *testing.T) {
	in := setupInstance(t)
	etc := filepath.Join(in.base, "etc")
	in.mkdir(etc, false)
	specFile := filepath.Join(etc, "app.env")
	if err := os.WriteFile(specFile, []byte("API_TOKEN=from-the-spec-path\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(in.base, "credentials")
	in.mkdir(creds, false)
	if err := os.WriteFile(filepath.Join(creds, "environmentFile"), []byte("API_TOKEN=from-the-credential\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	otherCreds := filepath.Join(in.base, "other-credentials") // another unit's: no environmentFile in it
	in.mkdir(otherCreds, false)
	in.set("environmentFile", specFile)
	in.mustSetup()

	tests := []struct {
		name string
		env  []string
		want string
	}{
		{name: "CredentialWins", env: []string{"CREDENTIALS_DIRECTORY=" + creds}, want: "API_TOKEN=from-the-credential"},
		{name: "NoCredentialsDirectoryReadsTheSpecPath", env: nil, want: "API_TOKEN=from-the-spec-path"},
		{name: "CredentialMissingReadsTheSpecPath", env: []string{"CREDENTIALS_DIRECTORY=" + otherCreds}, want: "API_TOKEN=from-the-spec-path"},
		{name: "RelativeDirectoryIsIgnored", env: []string{"CREDENTIALS_DIRECTORY=credentials"}, want: "API_TOKEN=from-the-spec-path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in.env = tt.env
			defer func() { in.env = nil }()
			out, errs, code := in.sandboxed("/usr/bin/env")
			if code != 0 {
				t.Fatalf("run -- env: exit %d\nstderr:\n%s", code, errs)
			}
			var got []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "API_TOKEN=") {
					got = append(got, l)
				}
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("the sandbox's API_TOKEN = %q, want exactly %q", got, tt.want)
			}
			if strings.Contains(out, "CREDENTIALS_DIRECTORY") {
				t.Errorf("CREDENTIALS_DIRECTORY reached the sandbox's environment:\n%s", out)
			}
		})
	}
}
