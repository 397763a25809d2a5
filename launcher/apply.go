package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ocnix/ocnix/internal/childproc"
	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/internal/exitcode"
	"github.com/ocnix/ocnix/internal/safefs"
	"github.com/ocnix/ocnix/internal/setuplock"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
	"golang.org/x/sys/unix"
)

// applier is every side effect of setup, run and teardown. Those commands
// decide from the Plan alone what to do and in which order; the applier
// only does it. The real one (hostApplier) acts on this machine; tests use
// a recording fake (apply_test.go) to check the decisions without root.
type applier interface {
	// Setup, in the order setup calls them.
	begin(p *Plan) error
	lookup(user, group string) (identity, error)
	lock(ctx context.Context, instance string, wait time.Duration) (release func(), err error)
	ensureDirs(dirs []DirStep, id identity) error
	sweep() error
	migrateLegacy(stateDir string) error
	record(result, reason string, id identity) error
	check(c PathCheck, id identity) error
	network(np netpolicy.Plan) (warnings []string, err error)
	scriptResolver(ctx context.Context, p *Plan) (stop func())
	stateID(path string) (string, error)
	readStamp(sc InitScript) (stamp, error)
	removeStamp(phase string) error
	writeStamp(phase string, s stamp) error
	runScript(ctx context.Context, p *Plan, sc InitScript) (childproc.Result, []string, error)
	writeFile(f FileStep, id identity) (changed bool, err error)
	close()

	// Run.
	checkCaller(p *Plan) error
	lastSetup(l Layout) (failed bool, why string, err error)
	stateReady(l Layout) error
	credentialsDir() string
	readEnvFile(path string) ([]envfile.Var, error)
	readConfig(f FileStep) ([]byte, error)
	enterNetwork(np netpolicy.Plan) error
	privateProc() error
	probeResolver(np netpolicy.Plan) error
	start(ctx context.Context, sp sandbox.Plan, cmd sandbox.Command, log *slog.Logger) (int, error)

	// Teardown.
	teardownNetwork(np netpolicy.Plan) error
}

// hostApplier applies plans to this machine.
type hostApplier struct {
	log        *slog.Logger
	stderr     io.Writer // init script output goes here, line-prefixed
	configPath string    // the spec, handed to the init scripts' run child
	lockDir    string
	scriptCmd  scriptCmdFunc
	// net converges the network; nil skips it (tests of the state logic).
	net  func(netpolicy.Plan) ([]string, error)
	now  func() time.Time
	root *safefs.Root
	priv *os.File // the private directory (privdir.go)
}

func newHostApplier(configPath string, log *slog.Logger, stderr io.Writer) *hostApplier {
	return &hostApplier{
		log:        log,
		stderr:     stderr,
		configPath: configPath,
		lockDir:    setuplock.DefaultDir,
		scriptCmd:  launcherScriptCmd,
		net:        applyNetwork,
		now:        time.Now,
	}
}

func (h *hostApplier) begin(p *Plan) error {
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "setup must run as root (it creates stateDir for user %q and the network); start the opencode-%s-setup unit or use sudo", p.User, p.Instance)
	}
	return nil
}

func (h *hostApplier) lookup(user, group string) (identity, error) {
	return lookupIdentity(user, group)
}

func (h *hostApplier) lock(ctx context.Context, instance string, wait time.Duration) (func(), error) {
	l, err := setuplock.Acquire(ctx, h.lockDir, instance, wait, h.log)
	if err != nil {
		return nil, err
	}
	h.log.Debug("holding the setup lock", "dir", h.lockDir)
	return func() { l.Release() }, nil
}

// ensureDirs creates stateDir's tree through fds (statedir.go) and the
// private directory (privdir.go), and keeps both open for the later steps.
func (h *hostApplier) ensureDirs(dirs []DirStep, id identity) error {
	for _, d := range dirs {
		switch d.Within {
		case InStateDir:
			if d.Mode != 0o700 || d.Owner != id.user || d.Group != id.group {
				return exitcode.Bugf("%w", fmt.Errorf("stateDir step %s: %s:%s %s, but setup makes the instance's dirs %s:%s 0700", d.Path, d.Owner, d.Group, d.Mode, id.user, id.group))
			}
			if h.root == nil {
				r, err := safefs.OpenRoot(d.Path, id.owner())
				if err != nil {
					return withCode(ExitOSErr, err)
				}
				h.root = r
				continue
			}
			f, err := h.root.EnsureDir(d.Path, id.owner())
			if err != nil {
				return withCode(ExitOSErr, err)
			}
			f.Close()
		case InLauncherDir:
			if d.Mode != privateDirMode || d.Owner != "root" || d.Group != id.group {
				return exitcode.Bugf("%w", fmt.Errorf("launcher dir step %s: %s:%s %s, but setup makes it root:%s %s", d.Path, d.Owner, d.Group, d.Mode, id.group, Mode(privateDirMode)))
			}
			priv, err := openPrivateDir(d.Path, id.gid)
			if err != nil {
				return withCode(ExitOSErr, err)
			}
			h.priv = priv
		default:
			return exitcode.Bugf("%w", fmt.Errorf("directory step %s: unknown place %q", d.Path, d.Within))
		}
	}
	if h.root == nil || h.priv == nil {
		return exitcode.Bugf("%w", errors.New("the plan has no stateDir or no launcher directory"))
	}
	return nil
}

func (h *hostApplier) close() {
	if h.root != nil {
		h.root.Close()
	}
	if h.priv != nil {
		h.priv.Close()
	}
}

// sweep removes temp files that a killed setup left in the dir it writes.
func (h *hostApplier) sweep() error {
	if err := safefs.SweepTempFiles(h.priv); err != nil {
		return withCode(ExitOSErr, err)
	}
	return nil
}

func (h *hostApplier) check(c PathCheck, id identity) error {
	switch c.Access {
	case AccessRWX:
		return checkDirectory(c.Path, id)
	case AccessExec:
		if err := checkExists(c.Key, c.Path); err != nil {
			return err
		}
		if err := accessAs(c.Path, unix.X_OK, id); err != nil {
			return errorf(ExitPermission, "%s %s: user %q cannot execute it (%w); make it executable (chmod 0755)", c.Key, c.Path, id.user, err)
		}
		return nil
	case AccessRootOpen:
		return checkRootOpen(c.Key, c.Path)
	}
	return checkExists(c.Key, c.Path)
}

func (h *hostApplier) network(np netpolicy.Plan) ([]string, error) {
	if h.net == nil {
		return nil, nil
	}
	if np.ListenPort > 0 && np.Listener == nil {
		// lookup found the user just before; the plan, built a moment
		// earlier with the same lookup, did not.
		return nil, errorf(ExitOSErr, "the network plan has no uid for the instance's user, which the peer guard needs; run setup again")
	}
	return h.net(np)
}

func (h *hostApplier) scriptResolver(ctx context.Context, p *Plan) func() {
	if h.net == nil {
		return func() {}
	}
	return scriptResolver(ctx, p, h.log)
}

// stateID returns the id of the stateDir opened by ensureDirs, making a new
// one when it has none (initscripts.go). The file sits in a directory the
// instance owns: only a root-owned, root-only, unlinked-elsewhere regular
// file counts, read without following links; anything else there is
// replaced (rename never follows a link), so the instance can at most make
// its own scripts run again.
func (h *hostApplier) stateID(path string) (string, error) {
	if h.root == nil || filepath.Base(path) != stateIDFile {
		return "", exitcode.Bugf("%w", fmt.Errorf("state id file %s is not %s in the stateDir setup opened", path, stateIDFile))
	}
	data, st, err := safefs.ReadFileAt(h.root.Dir(), stateIDFile)
	switch {
	case err == nil && st.Uid == 0 && st.Mode&0o077 == 0 && st.Nlink == 1:
		if id := parseStateID(data); id != "" {
			return id, nil
		}
	case err == nil:
		h.log.Warn("replacing a state id file that is not root's alone", "path", path, "uid", st.Uid, "mode", fmt.Sprintf("%04o", st.Mode&0o7777), "links", st.Nlink)
	case errors.Is(err, os.ErrNotExist):
	default:
		h.log.Warn("replacing the state id file", "path", path, "err", err)
	}
	id, err := newStateID()
	if err != nil {
		return "", withCode(ExitOSErr, fmt.Errorf("make a state id: %w", err))
	}
	if _, err := safefs.EnsureFileAt(h.root.Dir(), stateIDFile, []byte(id+"\n"), privateStampMode, &safefs.Owner{}); err != nil {
		return "", withCode(ExitOSErr, fmt.Errorf("write %s: %w", path, err))
	}
	return id, nil
}

func (h *hostApplier) readStamp(sc InitScript) (stamp, error) {
	data, err := safefs.ReadTrustedFile(h.priv, filepath.Base(sc.Stamp))
	switch {
	case err == nil:
		return parseStamp(data), nil
	case errors.Is(err, os.ErrNotExist):
		return stamp{}, nil
	}
	// Not root's or not a file: not our stamp; the script runs.
	h.log.Warn("ignoring an untrusted stamp", "script", sc.Key, "err", err)
	return stamp{}, nil
}

func (h *hostApplier) removeStamp(phase string) error {
	return safefs.RemoveFileAt(h.priv, stampName(phase))
}

func (h *hostApplier) writeStamp(phase string, s stamp) error {
	_, err := safefs.EnsureFileAt(h.priv, stampName(phase), []byte(s.String()), privateStampMode, &safefs.Owner{})
	return err
}

func (h *hostApplier) runScript(ctx context.Context, p *Plan, sc InitScript) (childproc.Result, []string, error) {
	cmd, err := h.scriptCmd(p, h.configPath, sc.Path)
	if err != nil {
		return childproc.Result{}, nil, err
	}
	tail := childproc.NewTailBuffer(childproc.TailLines)
	out := io.MultiWriter(tail, &childproc.PrefixWriter{W: h.stderr, Prefix: "init-" + sc.Phase + "| "})
	res, err := childproc.Run(ctx, cmd, sc.timeout(), out)
	return res, tail.Lines(), err
}

// writeFile writes a file of the private directory, or an instance-owned
// file in stateDir through the fds of ensureDirs (never following a link the
// instance planted).
func (h *hostApplier) writeFile(f FileStep, id identity) (bool, error) {
	if f.Within == InStateDir {
		if h.root == nil || f.Owner != id.user || f.Group != id.group {
			return false, exitcode.Bugf("%w", fmt.Errorf("stateDir file step %s %s:%s: setup writes only %s:%s files there, after the directories", f.Path, f.Owner, f.Group, id.user, id.group))
		}
		dir, err := h.root.OpenDir(filepath.Dir(f.Path))
		if err != nil {
			return false, withCode(ExitOSErr, fmt.Errorf("write %s: %w", f.Path, err))
		}
		defer dir.Close()
		changed, err := safefs.EnsureFileAt(dir, filepath.Base(f.Path), f.Content, os.FileMode(f.Mode), id.owner())
		if err != nil {
			return false, withCode(ExitOSErr, fmt.Errorf("write %s: %w", f.Path, err))
		}
		return changed, nil
	}
	if filepath.Dir(f.Path) != h.priv.Name() || f.Owner != "root" || f.Group != id.group {
		return false, exitcode.Bugf("%w", fmt.Errorf("file step %s %s:%s: setup writes only root:%s files in %s", f.Path, f.Owner, f.Group, id.group, h.priv.Name()))
	}
	changed, err := safefs.EnsureFileAt(h.priv, filepath.Base(f.Path), f.Content, os.FileMode(f.Mode), &safefs.Owner{UID: 0, GID: id.gid})
	if err != nil {
		return false, withCode(ExitOSErr, fmt.Errorf("write %s: %w", f.Path, err))
	}
	return changed, nil
}

func (h *hostApplier) checkCaller(p *Plan) error                      { return checkCaller(p) }
func (h *hostApplier) lastSetup(l Layout) (bool, string, error)       { return lastSetupFailed(l) }
func (h *hostApplier) readEnvFile(path string) ([]envfile.Var, error) { return envfile.Read(path) }
func (h *hostApplier) credentialsDir() string                         { return os.Getenv("CREDENTIALS_DIRECTORY") }
func (h *hostApplier) readConfig(f FileStep) ([]byte, error)          { return readPrivateFile(f.Path) }
func (h *hostApplier) enterNetwork(np netpolicy.Plan) error           { return enterNetwork(np) }
func (h *hostApplier) probeResolver(np netpolicy.Plan) error          { return netpolicy.ProbeResolverHere(np) }
func (h *hostApplier) teardownNetwork(np netpolicy.Plan) error        { return netpolicy.Teardown(np) }
func (h *hostApplier) stateReady(l Layout) error                      { _, err := os.Stat(l.Tmp); return err }
func (h *hostApplier) start(ctx context.Context, sp sandbox.Plan, cmd sandbox.Command, log *slog.Logger) (int, error) {
	return sandbox.Run(ctx, sp, cmd, log)
}

// privateProc gives a root-started run its own /proc and IPC namespace.
// Under systemd User= the unit's ProtectProc=invisible and PrivateIPC= do
// this, and the instance user could not.
func (h *hostApplier) privateProc() error {
	if os.Geteuid() != 0 {
		return nil
	}
	return privateProc()
}

// applyNetwork converges the instance's network to its plan: with isolation
// on, the netns, veth, addresses and nft rules exist exactly as planned;
// with it off, whatever an earlier spec created is removed, so that turning
// isolation off never leaves a stale namespace behind. Either way the
// listen port is registered in the peer guard of the shared host table. The warnings name
// host settings that still break egress.
func applyNetwork(np netpolicy.Plan) ([]string, error) {
	if !np.Enable {
		// Removes what an isolated setup left, and registers the listen
		// port in the peer guard: sharing the host network must not mean
		// reaching the other instances' servers.
		if err := netpolicy.EnsureShared(np); err != nil {
			return nil, withCode(ExitOSErr, fmt.Errorf("converge the network of a non-isolated instance: %w", err))
		}
		return netpolicy.SharedUIDWarnings(np.Instance), nil
	}
	if err := netpolicy.Ensure(np); err != nil {
		return nil, withCode(ExitOSErr, fmt.Errorf("set up network namespace %s: %w", np.Netns, err))
	}
	return append(netpolicy.Diagnose(np), netpolicy.SharedUIDWarnings(np.Instance)...), nil
}

// scriptCmdFunc builds the process that runs one init script. Setup uses
// launcherScriptCmd; tests inject their own.
type scriptCmdFunc func(p *Plan, configPath, script string) (*exec.Cmd, error)
