package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ocnix/ocnix/internal/safefs"
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

func (c *SetupCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	host := hostFor(s)
	if err := refuseEphemeral(s, host); err != nil {
		return err
	}
	p, err := buildPlan(s, host, nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	ctx := g.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	log := g.logger(p.Instance)
	st := &setup{plan: p, sys: newApplier(c.Config, log, g.stderr), rerunInit: c.RerunInit, lockWait: c.LockWait, log: log}
	if err := st.run(ctx); err != nil {
		return fmt.Errorf("instance %q: %w", p.Instance, err)
	}
	return nil
}

// newApplier is the applier of setup, run and teardown; tests swap in a
// recording one.
var newApplier = func(configPath string, log *slog.Logger, stderr io.Writer) applier {
	return newHostApplier(configPath, log, stderr)
}

// setup is one run of the setup command: it applies plan.Setup and
// plan.Network through sys, and decides nothing from anything else.
type setup struct {
	plan      *Plan
	sys       applier
	rerunInit bool
	lockWait  time.Duration // 0: plan.Setup.LockWaitSeconds
	log       *slog.Logger
	stateID   string // of this stateDir, recorded in the stamps
}

// run performs the steps of docs/setup.md in order. Steps that the sandbox
// itself needs (state dirs, path checks, network) come before preInitScript,
// because the script runs inside that sandbox and netns.
func (st *setup) run(ctx context.Context) (err error) {
	p, ss, sys := st.plan, st.plan.Setup, st.sys
	if err := sys.begin(p); err != nil {
		return err
	}
	id, err := sys.lookup(p.User, p.Group)
	if err != nil {
		return err
	}
	wait := st.lockWait
	if wait <= 0 {
		wait = time.Duration(ss.LockWaitSeconds) * time.Second
	}
	release, err := sys.lock(ctx, p.Instance, wait)
	if err != nil {
		return err
	}
	defer release()
	defer sys.close()

	if err := sys.ensureDirs(ss.Directories, id); err != nil {
		return err
	}
	if err := sys.sweep(); err != nil {
		return err
	}
	if err := sys.migrateLegacy(p.Layout.StateDir); err != nil {
		return err
	}
	if err := sys.record(setupRunning, "", id); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			err = sys.record(setupOK, "", id)
			return
		}
		if rerr := sys.record(setupFailed, failureReason(err), id); rerr != nil {
			st.log.Error("cannot record the failed setup; run will see it as not finished", "err", rerr)
		}
	}()
	st.log.Debug("state directories ready", "stateDir", p.Layout.StateDir)
	if ss.StateIDFile != "" {
		if st.stateID, err = sys.stateID(ss.StateIDFile); err != nil {
			return err
		}
	}

	for _, c := range ss.Checks {
		if err := sys.check(c, id); err != nil {
			return err
		}
	}
	warnings, err := sys.network(p.Network)
	if err != nil {
		return fmt.Errorf("set up the network: %w", err)
	}
	for _, w := range warnings { // host settings that still break egress, a uid shared with another instance
		st.log.Warn(w)
	}
	defer sys.scriptResolver(ctx, p)()
	if err := st.runInitScript(ctx, "pre"); err != nil {
		return err
	}
	for _, f := range ss.Files {
		changed, err := sys.writeFile(f, id)
		if err != nil {
			return err
		}
		if changed {
			st.log.Info("wrote "+filepath.Base(f.Path), "path", f.Path)
		}
	}
	if err := st.runInitScript(ctx, "post"); err != nil {
		return err
	}
	st.log.Info("setup complete")
	return nil
}

// checkDirectory requires directory to exist and be writable by the instance
// user, asked of the kernel with that user's credentials.
func checkDirectory(d string, id identity) error {
	fi, err := os.Stat(d)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errorf(ExitNoInput, "directory %s does not exist; create it and give user %q write access (setup never creates or chowns a project tree)", d, id.user)
	case err != nil:
		return errorf(ExitOSErr, "directory %s: %w", d, err)
	case !fi.IsDir():
		return errorf(ExitNoInput, "directory %s is not a directory", d)
	}
	if err := accessAs(d, unix.R_OK|unix.W_OK|unix.X_OK, id); err != nil {
		if errors.Is(err, errAccessDenied) {
			return errorf(ExitPermission, "directory %s is not writable by user %q (%w); grant it yourself, e.g. chown -R %s or setfacl -R -m u:%s:rwX (setup never changes a project tree's ownership)", d, id.user, err, id.user, id.user)
		}
		return errorf(ExitOSErr, "directory %s: check access as %q: %w", d, id.user, err)
	}
	return nil
}

// checkRootOpen opens p the way run, as root, opens it to read it, so that
// a path the instance could redirect fails setup, not only the next start.
func checkRootOpen(key, p string) error {
	f, _, err := safefs.OpenTrustedPath(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errorf(ExitNoInput, "%s %s does not exist; create it or remove it from the spec (systemd would refuse the unit too)", key, p)
		}
		return errorf(ExitConfig, "%s %s is refused: %w", key, p, err)
	}
	f.Close()
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
