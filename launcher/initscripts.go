package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Init scripts run as the instance user inside exactly the server's sandbox,
// netns and environment. Setup gets that by re-executing the launcher:
// `opencode-launcher run --config F -- SCRIPT`. The run child, not setup,
// reads environmentFile, so its secrets never pass through setup.
//
// # Stamps
//
// After a script succeeds, setup records a digest of (phase, path, content) in
// the launcher's private directory as init-<phase>.sha256 (root, 0600; see
// privdir.go). A script runs when the digest differs, when there is none, or
// with --rerun-init. The stamp is removed (durably) before the script starts
// and written (atomically) only after it exited 0, so a failure, a timeout or
// kill -9 at any point leaves no stamp and the next setup runs the script
// again.
//
// The stamps used to live in stateDir, where the instance could forge one and
// make setup skip a script whose content changed, for example one that an
// operator fixed to revoke something. Only root can write them now.

// initPhase is one of the two init scripts.
type initPhase struct {
	name string // pre or post
	key  string // spec key, for messages
	path string
}

func initPhases(s *Spec) (pre, post initPhase) {
	return initPhase{name: "pre", key: "preInitScript", path: s.PreInitScript},
		initPhase{name: "post", key: "postInitScript", path: s.PostInitScript}
}

func (p initPhase) stampName() string { return "init-" + p.name + ".sha256" }

// stampVersion is part of every digest, so that changing what a stamp covers
// makes every script run once more instead of silently skipping.
const stampVersion = "ocnix-init-stamp-v1"

// scriptDigest is the stamp content for a script: its phase and path are in
// it, so moving a script to the other phase or another path runs it again.
// environmentFile is deliberately not in it: a digest of secrets is a secret.
func scriptDigest(phase, path string, content io.Reader) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", stampVersion, phase, path)
	if _, err := io.Copy(h, content); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stampDecision says whether a script runs, and why, for the log.
func stampDecision(recorded, current string, force bool) (run bool, why string) {
	switch {
	case force:
		return true, "--rerun-init was given"
	case recorded == "":
		return true, "it has no record of a successful run"
	case recorded != current:
		return true, "its content or path changed since its last successful run"
	}
	return false, "unchanged since its last successful run"
}

// parseStamp reads a stamp file's content; anything malformed counts as absent.
func parseStamp(data []byte) string {
	s := strings.TrimSpace(string(data))
	if len(s) != sha256.Size*2 {
		return ""
	}
	if _, err := hex.DecodeString(s); err != nil {
		return ""
	}
	return s
}

// scriptCmdFunc builds the process that runs one init script. Setup uses
// launcherScriptCmd; tests inject their own.
type scriptCmdFunc func(s *Spec, configPath, script string) (*exec.Cmd, error)

// selfExe is the running launcher. /proc/self/exe stays valid even if the
// binary on disk is replaced while setup runs.
const selfExe = "/proc/self/exe"

// launcherScriptCmd re-executes the launcher as `run --config F -- SCRIPT`.
// run joins the netns, drops to the instance user, applies Landlock and
// seccomp, sets HOME=stateDir, the cwd to directory and the environment
// (including environmentFile), then execs SCRIPT.
func launcherScriptCmd(s *Spec, configPath, script string) (*exec.Cmd, error) {
	cmd := exec.Command(selfExe, "run", "--config", configPath, "--", script)
	cmd.Args[0] = "opencode-launcher"
	cmd.Env = os.Environ()
	return cmd, nil
}

// scriptError is a failed init script. Its message carries the tail of the
// output; reason() is the short form stored in the last-setup record, which
// the instance can read, so it holds no output.
type scriptError struct {
	phase   initPhase
	result  childResult
	timeout time.Duration
	tail    []string
}

func (e *scriptError) reason() string {
	if e.result.timedOut {
		return fmt.Sprintf("%s %s did not finish within initScriptTimeout (%s) and was killed", e.phase.key, e.phase.path, e.timeout)
	}
	return fmt.Sprintf("%s %s %s", e.phase.key, e.phase.path, e.result)
}

func (e *scriptError) Error() string {
	var b strings.Builder
	b.WriteString(e.reason())
	b.WriteString("; fix the script and run setup again (the server does not start until setup succeeds)")
	if len(e.tail) == 0 {
		b.WriteString("; it printed nothing")
		return b.String()
	}
	fmt.Fprintf(&b, "; the last %d lines of its output:", len(e.tail))
	for _, l := range e.tail {
		b.WriteString("\n  | ")
		b.WriteString(l)
	}
	return b.String()
}

// hashScript reads the script as root. O_NONBLOCK and the regular-file
// check keep a FIFO from hanging setup, should an operator point a script
// into a tree the instance can write.
func hashScript(ph initPhase) (string, error) {
	f, err := os.OpenFile(ph.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		code := ExitOSErr
		if errors.Is(err, os.ErrNotExist) {
			code = ExitNoInput
		}
		return "", errorf(code, "%s %s: open it: %w", ph.key, ph.path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", errorf(ExitNoInput, "%s %s is not a regular file", ph.key, ph.path)
	}
	digest, err := scriptDigest(ph.name, ph.path, f)
	if err != nil {
		return "", fmt.Errorf("%s %s: read it: %w", ph.key, ph.path, err)
	}
	return digest, nil
}

// runInitScript runs one phase if its stamp says so.
func (st *setup) runInitScript(ctx context.Context, ph initPhase) error {
	if ph.path == "" {
		return st.dropStamp(ph)
	}
	digest, err := hashScript(ph)
	if err != nil {
		return err
	}
	meta := st.priv
	recorded := ""
	if data, err := readTrustedFile(meta, ph.stampName()); err == nil {
		recorded = parseStamp(data)
	} else if !errors.Is(err, os.ErrNotExist) {
		// Not root's or not a file: not our stamp; the script runs.
		st.log.Warn("ignoring an untrusted stamp", "script", ph.key, "err", err)
	}
	run, why := stampDecision(recorded, digest, st.rerunInit)
	if !run {
		st.log.Info("skipping init script: "+why, "script", ph.key, "path", ph.path, "sha256", digest[:12])
		return nil
	}
	st.log.Info("running init script: "+why, "script", ph.key, "path", ph.path, "timeout", st.timeout().String())
	// No stamp may survive a script that starts and does not finish.
	if err := removeFileAt(meta, ph.stampName()); err != nil {
		return fmt.Errorf("%s: %w", ph.key, err)
	}
	cmd, err := st.scriptCmd(st.spec, st.configPath, ph.path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", ph.key, ph.path, err)
	}
	tail := newTailBuffer(tailLines)
	out := io.MultiWriter(tail, &prefixWriter{w: st.stderr, prefix: "init-" + ph.name + "| "})
	start := time.Now()
	res, err := runChild(ctx, cmd, st.timeout(), out)
	if err != nil {
		return fmt.Errorf("%s %s: %w", ph.key, ph.path, err)
	}
	if res.timedOut || res.status != 0 {
		return withCode(ExitInitScript, &scriptError{phase: ph, result: res, timeout: st.timeout(), tail: tail.Lines()})
	}
	if _, err := ensureFileAt(meta, ph.stampName(), []byte(digest+"\n"), privateStampMode, &owner{}); err != nil {
		return fmt.Errorf("%s: record stamp: %w", ph.key, err)
	}
	st.log.Info("init script succeeded", "script", ph.key, "duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

func (st *setup) timeout() time.Duration {
	return time.Duration(st.spec.InitScriptTimeout) * time.Second
}

// dropStamp forgets a phase that has no script any more, so that adding the
// same script back later runs it again, as an operator would expect.
func (st *setup) dropStamp(ph initPhase) error {
	if err := removeFileAt(st.priv, ph.stampName()); err != nil {
		return fmt.Errorf("%s: %w", ph.key, err)
	}
	return nil
}
