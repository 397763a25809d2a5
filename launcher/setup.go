package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ocnix/ocnix/netpolicy"
	"golang.org/x/sys/unix"
)

// SetupCmd converges an instance: state dirs, opencode.json, network and init
// scripts. It is the ExecStart of opencode-<name>-setup.service (root,
// oneshot) and safe to run any number of times; see docs/setup.md.
type SetupCmd struct {
	ConfigFlag
	RerunInit bool          `name:"rerun-init" help:"Run pre/post init scripts even if their content did not change."`
	LockWait  time.Duration `name:"lock-wait" placeholder:"DURATION" help:"How long to wait for another setup of this instance (default: twice initScriptTimeout plus one minute)."`
}

// netSetup converges the instance's network (network.go); tests replace it.
var netSetup = ensureNetwork

func (c *SetupCmd) Run(g *Globals) error {
	s, err := LoadFile(c.Config)
	if err != nil {
		return err
	}
	ctx := g.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	st := &setup{
		spec:       s,
		configPath: c.Config,
		layout:     LayoutFor(s),
		rerunInit:  c.RerunInit,
		log:        g.logger(s.Name),
		stderr:     g.stderr,
		lockDir:    defaultLockDir,
		lockWait:   c.LockWait,
		scriptCmd:  launcherScriptCmd,
		netSetup:   netSetup,
		now:        time.Now,
	}
	if err := st.run(ctx); err != nil {
		return fmt.Errorf("instance %q: %w", s.Name, err)
	}
	return nil
}

// setup is one run of the setup command, with its side doors for tests.
type setup struct {
	spec       *Spec
	configPath string // absolute; handed to the run child
	layout     Layout
	rerunInit  bool
	log        *slog.Logger
	stderr     io.Writer // init script output goes here, line-prefixed
	lockDir    string
	lockWait   time.Duration // 0: derived from initScriptTimeout
	scriptCmd  scriptCmdFunc
	netSetup   func(*Spec) error
	now        func() time.Time

	id   identity
	root *stateRoot
	priv *os.File // the private directory (privdir.go)
}

// run performs the steps of docs/setup.md in order. Steps that the sandbox
// itself needs (state dirs, path checks, network) come before preInitScript,
// because the script runs inside that sandbox and netns.
func (st *setup) run(ctx context.Context) (err error) {
	if os.Geteuid() != 0 {
		return errorf(ExitPermission, "setup must run as root (it creates stateDir for user %q and the network); start the opencode-%s-setup unit or use sudo", st.spec.User, st.spec.Name)
	}
	if st.id, err = lookupIdentity(st.spec); err != nil {
		return err
	}
	lock, err := acquireLock(ctx, st.lockDir, st.spec.Name, st.lockWaitOrDefault(), st.log)
	if err != nil {
		return err
	}
	defer lock.Release()
	st.log.Debug("holding the setup lock", "dir", st.lockDir)

	if st.root, err = ensureLayout(st.layout, st.id.owner()); err != nil {
		return withCode(ExitOSErr, err)
	}
	defer st.root.Close()
	if st.priv, err = openPrivateDir(st.layout.Private, st.id.gid); err != nil {
		return withCode(ExitOSErr, err)
	}
	defer st.priv.Close()
	if err := st.sweep(); err != nil {
		return err
	}
	if err := st.migrateLegacy(); err != nil {
		return err
	}
	if err := st.recordSetup(setupRunning, ""); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			err = st.recordSetup(setupOK, "")
			return
		}
		if rerr := st.recordSetup(setupFailed, failureReason(err)); rerr != nil {
			st.log.Error("cannot record the failed setup; run will see it as not finished", "err", rerr)
		}
	}()
	st.log.Debug("state directories ready", "stateDir", st.layout.StateDir)

	if err := st.checkPaths(); err != nil {
		return err
	}
	if st.netSetup != nil {
		if err := st.netSetup(st.spec); err != nil {
			return fmt.Errorf("set up the network: %w", err)
		}
		if np, err := buildNetwork(st.spec); err == nil {
			for _, w := range netpolicy.Diagnose(np) { // host settings that still break egress
				st.log.Warn(w)
			}
		}
	}
	if st.netSetup != nil {
		defer scriptResolver(ctx, st.spec, st.log)()
	}
	pre, post := initPhases(st.spec)
	if err := st.runInitScript(ctx, pre); err != nil {
		return err
	}
	changed, err := ensureOpencodeConfig(st.priv, st.spec, st.id.gid)
	if err != nil {
		return withCode(ExitOSErr, err)
	}
	if changed {
		st.log.Info("wrote opencode.json", "path", st.layout.ConfigFile)
	}
	if err := st.runInitScript(ctx, post); err != nil {
		return err
	}
	st.log.Info("setup complete")
	return nil
}

// lockWaitOrDefault outlasts a legitimate setup running both scripts to
// their timeout, so a queued setup only gives up on a stuck one.
func (st *setup) lockWaitOrDefault() time.Duration {
	if st.lockWait > 0 {
		return st.lockWait
	}
	return 2*st.timeout() + time.Minute
}

// sweep removes temp files that a killed setup left in the dir it writes.
func (st *setup) sweep() error {
	if err := sweepTempFiles(st.priv); err != nil {
		return withCode(ExitOSErr, err)
	}
	return nil
}

// checkPaths verifies what the sandbox will grant, before anything runs in
// it. Setup never creates or chowns these: they belong to the operator.
func (st *setup) checkPaths() error {
	s := st.spec
	if err := st.checkDirectory(); err != nil {
		return err
	}
	for i, p := range s.Sandbox.ReadWritePaths {
		if err := checkExists(fmt.Sprintf("sandbox.readWritePaths[%d]", i), p); err != nil {
			return err
		}
	}
	for i, p := range s.Sandbox.ReadOnlyPaths {
		if err := checkExists(fmt.Sprintf("sandbox.readOnlyPaths[%d]", i), p); err != nil {
			return err
		}
	}
	// Only its existence: the run child reads it, so secrets never pass here.
	if s.EnvironmentFile != "" {
		if err := checkExists("environmentFile", s.EnvironmentFile); err != nil {
			return err
		}
	}
	pre, post := initPhases(s)
	for _, ph := range []initPhase{pre, post} {
		if ph.path == "" {
			continue
		}
		if err := checkExists(ph.key, ph.path); err != nil {
			return err
		}
		if err := accessAs(ph.path, unix.X_OK, st.id); err != nil {
			return errorf(ExitPermission, "%s %s: user %q cannot execute it (%w); make it executable (chmod 0755)", ph.key, ph.path, st.id.user, err)
		}
	}
	return nil
}

// checkDirectory requires directory to exist and be writable by the instance
// user, asked of the kernel with that user's credentials.
func (st *setup) checkDirectory() error {
	d := st.spec.Directory
	fi, err := os.Stat(d)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errorf(ExitNoInput, "directory %s does not exist; create it and give user %q write access (setup never creates or chowns a project tree)", d, st.id.user)
	case err != nil:
		return errorf(ExitOSErr, "directory %s: %w", d, err)
	case !fi.IsDir():
		return errorf(ExitNoInput, "directory %s is not a directory", d)
	}
	if err := accessAs(d, unix.R_OK|unix.W_OK|unix.X_OK, st.id); err != nil {
		if errors.Is(err, errAccessDenied) {
			return errorf(ExitPermission, "directory %s is not writable by user %q (%w); grant it yourself, e.g. chown -R %s or setfacl -R -m u:%s:rwX (setup never changes a project tree's ownership)", d, st.id.user, err, st.id.user, st.id.user)
		}
		return errorf(ExitOSErr, "directory %s: check access as %q: %w", d, st.id.user, err)
	}
	return nil
}

func checkExists(key, p string) error {
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errorf(ExitNoInput, "%s %s does not exist; create it or remove it from the spec (systemd would refuse the unit too)", key, p)
		}
		return errorf(ExitOSErr, "%s %s: %w", key, p, err)
	}
	return nil
}
