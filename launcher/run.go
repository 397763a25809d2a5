package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// RunCmd runs the server or a debug command in the sandbox.
type RunCmd struct {
	ConfigFlag
	DryRun bool     `name:"dry-run" help:"Print the plan that run would apply (same as explain) and exit."`
	JSON   bool     `name:"json" help:"With --dry-run: print the plan as JSON."`
	Cmd    []string `arg:"" optional:"" passthrough:"" help:"Command to run instead of the server, after --, in exactly the server's sandbox."`
}

// childExit carries the confined program's exit status through kong; it is
// not an error of the launcher and prints nothing.
type childExit struct{ code int }

func (c *childExit) Error() string { return fmt.Sprintf("exit status %d", c.code) }

func (c *RunCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	cmd := c.Cmd
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	// The same host facts as explain and setup, so that the plan is theirs.
	host := hostFor(s)
	if err := refuseEphemeral(s, host); err != nil && !c.DryRun {
		return err
	}
	if len(cmd) > 0 {
		resolved, err := lookPath(cmd[0], searchPath(s, host))
		if err != nil {
			return withCode(ExitNoInput, fmt.Errorf("instance %q: %w", s.Name, err))
		}
		cmd = append([]string{resolved}, cmd[1:]...)
	}
	p, err := buildPlan(s, host, cmd)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	if c.DryRun {
		return printPlan(g.stdout, p, c.JSON)
	}
	log := g.logger(p.Instance)
	return runPlan(g.ctx, newApplier(c.Config, log, g.stderr), p, len(cmd) > 0, log)
}

// runPlan is the privileged part of run: it checks that setup left the
// instance usable, composes the secret environment, enters the network
// namespace and hands over to the sandbox. It reads the plan and nothing
// else of the spec.
func runPlan(ctx context.Context, sys applier, p *Plan, debugCmd bool, log *slog.Logger) error {
	fail := func(code int, err error) error { return withCode(code, fmt.Errorf("instance %q: %w", p.Instance, err)) }
	if err := sys.checkCaller(p); err != nil {
		return err
	}
	// A debug command (and setup's init scripts, which use the same path)
	// runs even after a failed setup: that is when an operator needs it.
	if err := sys.stateReady(p.Layout); err != nil {
		return fail(ExitNoInput, fmt.Errorf("state directory %s is not set up (%w); run: opencode-launcher setup --config <spec>", p.Layout.StateDir, err))
	}
	if !debugCmd {
		failed, why, err := sys.lastSetup(p.Layout)
		if err != nil {
			return fail(ExitOSErr, fmt.Errorf("read last setup result: %w", err))
		}
		if failed {
			return fail(ExitInitScript, fmt.Errorf("the last setup failed (%s); fix it and run setup again before starting the server", why))
		}
	}
	env := p.Env
	if p.EnvironmentFile != "" {
		from := envFileSource(p.EnvironmentFile, p.EnvironmentCredential, sys.credentialsDir())
		if from != p.EnvironmentFile {
			log.Debug("reading environmentFile from the unit's credential", "environmentFile", p.EnvironmentFile, "path", from)
		}
		vars, err := sys.readEnvFile(from)
		if err != nil {
			return fail(ExitConfig, err)
		}
		if env, err = withEnvFile(env, vars, from); err != nil {
			return fail(ExitConfig, err)
		}
	}
	if !debugCmd {
		if err := checkOpencodeConfig(sys, p); err != nil {
			return fail(ExitInitScript, err)
		}
	}

	// The netns, the private /proc and the IPC namespace are made on this OS
	// thread only; sandbox.Run reads them from it (its confining thread joins
	// them), so the goroutine must stay on it until Run has started.
	runtime.LockOSThread()
	if p.Network.Enable {
		if err := sys.enterNetwork(p.Network); err != nil {
			return fail(ExitPermission, err)
		}
	}
	if err := sys.privateProc(); err != nil {
		return fail(ExitOSErr, err)
	}
	if debugCmd {
		log.Info("running command in sandbox", "argv", strings.Join(p.Argv, " "))
	} else {
		if !hasEnv(env, "OPENCODE_SERVER_PASSWORD") {
			// opencode answers every route without auth then, including
			// /config/providers, which returns provider API keys in clear.
			log.Warn("OPENCODE_SERVER_PASSWORD is not set: anyone who can reach the listen address can drive the agent and read its provider keys; set it in environmentFile")
		}
		if err := sys.probeResolver(p.Network); err != nil {
			log.Warn("names in networkIsolation.outboundAllowDomains will not resolve until the instance's resolver runs (opencode-"+p.Instance+"-dns.service, or opencode-launcher dns)", "err", err)
		}
		log.Info("starting server", "listen", p.Listen, "gate", p.Sandbox.Gate.Mode)
	}
	// sandbox.Run owns SIGTERM/SIGINT/SIGHUP: it forwards them to the server
	// and exits with the server's status.
	code, err := sys.start(ctx, p.Sandbox, sandbox.Command{
		Path: p.Argv[0],
		Args: p.Argv,
		Env:  environ(env),
		Dir:  p.Directory,
	}, log)
	if err != nil {
		return fail(sandboxExitCode(err), err)
	}
	if !debugCmd {
		log.Info("server exited", "status", code)
	}
	return &childExit{code: code}
}

func sandboxExitCode(err error) int {
	switch {
	case errors.Is(err, sandbox.ErrLandlockTooOld), errors.Is(err, sandbox.ErrGateUnavailable):
		return ExitUnavailable
	case errors.Is(err, sandbox.ErrWrongUser):
		return ExitPermission
	case errors.Is(err, os.ErrPermission):
		return ExitPermission
	case errors.Is(err, os.ErrNotExist):
		return ExitNoInput
	}
	return ExitOSErr
}

// enterNetwork joins the instance netns as root, or, as the instance user
// under systemd's NetworkNamespacePath=, verifies that it is already in it.
// Either way it fails closed: no egress filter, no server.
func enterNetwork(np netpolicy.Plan) error {
	if os.Geteuid() == 0 {
		// As root, read the filter back and compare it with the plan, as
		// preflight does for the unit; Enter alone checks its chains only.
		if err := netpolicy.VerifyFilter(np); err != nil {
			return err
		}
		if err := netpolicy.Enter(np); err != nil {
			return fmt.Errorf("join network namespace %s (run setup first): %w", np.Netns, err)
		}
		return nil
	}
	if err := netpolicy.Verify(np); err != nil {
		return fmt.Errorf("network isolation is on but this process is not in %s; start it with NetworkNamespacePath=%s or as root: %w", np.Netns, np.NetnsPath, err)
	}
	return nil
}

// checkCaller: run starts as root (and drops) or as the instance user
// (systemd User=). Anyone else is refused before anything is read, so the
// error names the real problem instead of an unreadable state directory.
func checkCaller(p *Plan) error {
	uid := os.Getuid()
	if uid == 0 {
		return nil
	}
	u, err := user.Lookup(p.User)
	if err != nil {
		return withCode(ExitNoInput, fmt.Errorf("instance %q: look up user %q: %w; create it (the NixOS module does) or fix the spec's user", p.Instance, p.User, err))
	}
	if u.Uid != strconv.Itoa(uid) {
		who := strconv.Itoa(uid)
		if me, err := user.LookupId(who); err == nil {
			who = me.Username
		}
		return errorf(ExitPermission, "instance %q runs as user %s, but the launcher runs as %s; start it as root or as %s (systemd User=%s)", p.Instance, p.User, who, p.User, p.User)
	}
	return nil
}

// lookPath resolves a debug command like a shell would with the instance's
// PATH, so that `run -- psql` finds what the instance would find.
func lookPath(name string, path []string) (string, error) {
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		return abs, nil
	}
	for _, dir := range path {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in the instance's PATH (%s): %w", name, strings.Join(path, ":"), os.ErrNotExist)
}

func hasEnv(env []EnvEntry, name string) bool {
	for _, e := range env {
		if e.Name == name && e.Value != "" {
			return true
		}
	}
	return false
}
