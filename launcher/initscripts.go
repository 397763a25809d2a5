package launcher

import (
	"context"
	"crypto/rand"
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

	"github.com/ocnix/ocnix/internal/childproc"
	"github.com/ocnix/ocnix/internal/safefs"
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
//
// # Which stateDir a stamp belongs to
//
// Stamps outside stateDir would outlive it: an operator who deletes stateDir
// to start the instance afresh expects the init scripts to set it up again.
// So setup keeps a random id in stateDir/.ocnix-state-id (root, 0600: the
// instance can neither read nor forge it, only delete it, which merely runs
// its own scripts again) and writes it into every stamp; a stamp naming
// another id (or none: a stamp of an older release) is no record for this
// stateDir. An id rather than stateDir's device and inode: a recreated
// directory often gets the freed inode back, and a restored backup should
// keep its id.

// stateIDFile is the name of the id file in stateDir.
const stateIDFile = ".ocnix-state-id"

// stamp is what a stamp file records: the script's digest and the id of the
// stateDir it set up.
type stamp struct {
	Digest string
	State  string
}

func (s stamp) String() string { return s.Digest + "\nstate " + s.State + "\n" }

// newStateID is a fresh stateDir id: 128 random bits, hex.
func newStateID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// parseStateID reads the id file's content; anything malformed is no id.
func parseStateID(data []byte) string {
	s := strings.TrimSpace(string(data))
	if len(s) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(s); err != nil {
		return ""
	}
	return s
}

func stampName(phase string) string { return "init-" + phase + ".sha256" }

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
func stampDecision(recorded stamp, current stamp, force bool) (run bool, why string) {
	switch {
	case force:
		return true, "--rerun-init was given"
	case recorded.Digest == "":
		return true, "it has no record of a successful run"
	case recorded.State == "":
		return true, "its record predates the stateDir id (" + stateIDFile + "), so it runs once more"
	case recorded.State != current.State:
		return true, "stateDir is not the one it last set up (it was deleted, recreated or its " + stateIDFile + " removed)"
	case recorded.Digest != current.Digest:
		return true, "its content or path changed since its last successful run"
	}
	return false, "unchanged since its last successful run"
}

// parseStamp reads a stamp file's content: the digest line, then "state ID"
// (absent in stamps of older releases). Anything malformed counts as absent.
func parseStamp(data []byte) stamp {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	d := strings.TrimSpace(lines[0])
	if len(d) != sha256.Size*2 {
		return stamp{}
	}
	if _, err := hex.DecodeString(d); err != nil {
		return stamp{}
	}
	st := stamp{Digest: d}
	if len(lines) == 2 {
		if id, ok := strings.CutPrefix(strings.TrimSpace(lines[1]), "state "); ok {
			st.State = parseStateID([]byte(id))
		}
	}
	if len(lines) > 2 {
		return stamp{}
	}
	return st
}

// selfExe is the running launcher. /proc/self/exe stays valid even if the
// binary on disk is replaced while setup runs.
const selfExe = "/proc/self/exe"

// launcherScriptCmd re-executes the launcher as `run --config F -- SCRIPT`.
// run joins the netns, drops to the instance user, applies Landlock and
// seccomp, sets HOME=stateDir, the cwd to directory and the environment
// (including environmentFile), then execs SCRIPT.
func launcherScriptCmd(_ *Plan, configPath, script string) (*exec.Cmd, error) {
	cmd := exec.Command(selfExe, "run", "--config", configPath, "--", script)
	cmd.Args[0] = "opencode-launcher"
	cmd.Env = os.Environ()
	return cmd, nil
}

// scriptError is a failed init script. Its message carries the tail of the
// output; reason() is the short form stored in the last-setup record, which
// the instance can read, so it holds no output.
type scriptError struct {
	script  InitScript
	result  childproc.Result
	timeout time.Duration
	tail    []string
}

func (e *scriptError) reason() string {
	if e.result.TimedOut {
		return fmt.Sprintf("%s %s did not finish within initScriptTimeout (%s) and was killed", e.script.Key, e.script.Path, e.timeout)
	}
	return fmt.Sprintf("%s %s %s", e.script.Key, e.script.Path, e.result)
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

// maxScriptSize bounds what digestScript reads: a script, or a binary an
// operator points at, is far smaller; a planted link to a huge file must
// not keep setup reading.
const maxScriptSize = 256 << 20

// digestScript reads the script for its digest. As root (setup) it opens it
// the way root opens everything it reads for the instance
// (safefs.OpenTrustedPath): through root-owned directories, following only
// root's links, a regular file only. A script in a tree the instance can
// write is refused: the instance could swap it between the digest and the
// run, so what setup records would not be what ran, and a link would make
// root read (and log the digest of) any root-only file. Others (explain as
// a user) read it as they may, but never block on a FIFO.
func digestScript(phase, path string) (string, error) {
	var f *os.File
	var err error
	if os.Geteuid() == 0 {
		f, _, err = safefs.OpenTrustedPath(path)
	} else {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			if fi, serr := f.Stat(); serr != nil || !fi.Mode().IsRegular() {
				f.Close()
				return "", errors.New("it is not a regular file")
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("open it: %w", err)
	}
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: maxScriptSize + 1}
	digest, err := scriptDigest(phase, path, lr)
	if err != nil {
		return "", fmt.Errorf("read it: %w", err)
	}
	if lr.N == 0 {
		return "", fmt.Errorf("it is larger than %d bytes", maxScriptSize)
	}
	return digest, nil
}

// runInitScript runs the plan's script of phase if its stamp says so; a
// phase without a script loses its stamp, so that adding the same script
// back later runs it again, as an operator would expect.
func (st *setup) runInitScript(ctx context.Context, phase string) error {
	sys := st.sys
	sc, ok := st.plan.Setup.initScript(phase)
	if !ok {
		if err := sys.removeStamp(phase); err != nil {
			return fmt.Errorf("%s init script: %w", phase, err)
		}
		return nil
	}
	if sc.DigestError != "" {
		return errorf(ExitNoInput, "%s %s: %s", sc.Key, sc.Path, sc.DigestError)
	}
	recorded, err := sys.readStamp(sc)
	if err != nil {
		return fmt.Errorf("%s: %w", sc.Key, err)
	}
	current := stamp{Digest: sc.Digest, State: st.stateID}
	run, why := stampDecision(recorded, current, st.rerunInit)
	if !run {
		st.log.Info("skipping init script: "+why, "script", sc.Key, "path", sc.Path, "sha256", sc.Digest[:12])
		return nil
	}
	st.log.Info("running init script: "+why, "script", sc.Key, "path", sc.Path, "timeout", sc.timeout().String())
	// No stamp may survive a script that starts and does not finish.
	if err := sys.removeStamp(phase); err != nil {
		return fmt.Errorf("%s: %w", sc.Key, err)
	}
	start := time.Now()
	res, tail, err := sys.runScript(ctx, st.plan, sc)
	if err != nil {
		return fmt.Errorf("%s %s: %w", sc.Key, sc.Path, err)
	}
	if res.TimedOut || res.Status != 0 {
		return withCode(ExitInitScript, &scriptError{script: sc, result: res, timeout: sc.timeout(), tail: tail})
	}
	if err := sys.writeStamp(phase, current); err != nil {
		return fmt.Errorf("%s: record stamp: %w", sc.Key, err)
	}
	st.log.Info("init script succeeded", "script", sc.Key, "duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}
