package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/alecthomas/kong"
	"github.com/ocnix/ocnix/internal/account"
	"github.com/ocnix/ocnix/internal/logging"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// Version is set at build time with -ldflags "-X github.com/ocnix/ocnix/launcher.Version=…".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Globals are flags shared by every command.
type Globals struct {
	Verbose bool             `short:"v" help:"Log debug messages."`
	Version kong.VersionFlag `help:"Print the version and exit."`

	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
}

func (g *Globals) logger(instance string) *slog.Logger {
	lvl := slog.LevelInfo
	if g.Verbose {
		lvl = slog.LevelDebug
	}
	return logging.New(g.stderr, instance, lvl)
}

// CLI is opencode-launcher's command line (DESIGN.md, "The CLI").
type CLI struct {
	Globals

	Check     CheckCmd     `cmd:"" help:"Validate an instance spec; list every problem with its key."`
	Explain   ExplainCmd   `cmd:"" help:"Print the effective plan (sandbox, network, argv, env names, opencode.json) without side effects."`
	Setup     SetupCmd     `cmd:"" help:"Converge an instance's state dir, opencode.json, network and init scripts (root, idempotent)."`
	Run       RunCmd       `cmd:"" help:"Run the server (or -- CMD) confined by the instance's sandbox and network."`
	Status    StatusCmd    `cmd:"" help:"Show the last setup result and, with network isolation, the netns and the egress filter's hit counters."`
	Preflight PreflightCmd `cmd:"" help:"Root, before the server starts (ExecStartPre=+): refuse unless the last setup succeeded, opencode.json matches the spec and the netns holds exactly the planned egress filter."`
	Teardown  TeardownCmd  `cmd:"" help:"Remove the instance's netns, links and nft tables (root, idempotent). Never touches directory or stateDir."`
	DNS       DNSCmd       `cmd:"" name:"dns" help:"Run the instance's DNS resolver for networkIsolation.outboundAllowDomains (root, long-running; the opencode-<name>-dns unit)."`
}

// ConfigFlag is the --config flag every command takes.
type ConfigFlag struct {
	Config string `short:"c" required:"" type:"path" placeholder:"FILE" help:"Instance spec (JSON) written by the Nix module."`
}

// Main runs the CLI with args (without the program name) and returns the exit
// code. I/O is injected so that tests drive it in-process.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var cli CLI
	cli.ctx, cli.stdout, cli.stderr = ctx, stdout, stderr
	exited := false
	parser, err := kong.New(&cli,
		kong.Name("opencode-launcher"),
		kong.Description("Runs one sandboxed opencode server from an ocnix instance spec."),
		kong.Writers(stdout, stderr),
		kong.Vars{"version": version()},
		kong.UsageOnError(),
		kong.Exit(func(c int) { exited = true; code = c; panic(exitPanic{}) }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "opencode-launcher: %v\n", err)
		return ExitBug
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(exitPanic); !ok || !exited {
				panic(r)
			}
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "opencode-launcher: %v\n", err)
		return ExitUsage
	}
	err = kctx.Run(&cli.Globals)
	var ce *childExit
	if err != nil && !errors.As(err, &ce) {
		var ps *Problems
		if errors.As(err, &ps) {
			fmt.Fprintln(stderr, err.Error())
		} else {
			fmt.Fprintf(stderr, "opencode-launcher: %v\n", err)
		}
	}
	return ExitCode(err)
}

type exitPanic struct{}

// MainOS is main's body: os args and streams, exit with the code.
func MainOS() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// CheckCmd validates a spec.
type CheckCmd struct {
	ConfigFlag
}

// Run prints nothing on success, like a compiler; the exit code carries it.
func (c *CheckCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	// Warnings do not fail the check: each names something that may be
	// intended (and the Nix build must not break on a host fact).
	for _, w := range p.Warnings {
		fmt.Fprintf(g.stderr, "instance %q: warning: %s\n", s.Name, w)
	}
	fmt.Fprintf(g.stdout, "instance %q: spec is valid\n", s.Name)
	return nil
}

// ExplainCmd prints the plan.
type ExplainCmd struct {
	ConfigFlag
	JSON bool `name:"json" help:"Print the plan as JSON."`
}

func (c *ExplainCmd) Run(g *Globals) error {
	s, err := loadFile(c.Config)
	if err != nil {
		return err
	}
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		return withCode(ExitSpecInvalid, err)
	}
	return printPlan(g.stdout, p, c.JSON)
}

func printPlan(w io.Writer, p *Plan, asJSON bool) error {
	if asJSON {
		b, err := p.JSON()
		if err != nil {
			return withCode(ExitBug, fmt.Errorf("render plan: %w", err))
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := io.WriteString(w, p.String())
	return err
}

// detectHost reads the few host facts the plan depends on.
func detectHost() Host {
	caps := sandbox.DetectCaps()
	h := Host{NixOS: caps.Layout == sandbox.LayoutNixOS, Sandbox: caps, EphemeralPorts: readEphemeralRange()}
	var err error
	if h.Net, err = netpolicy.ReadHostFacts(); err != nil {
		h.NetErr = err.Error()
	}
	return h
}

// hostFor is detectHost plus the digests of s's init scripts, so that the
// plan names the exact content setup would run.
func hostFor(s *Spec) Host {
	h := detectHost()
	h.Scripts = ScriptFacts{}
	for _, sc := range [...]struct{ phase, path string }{{"pre", s.PreInitScript}, {"post", s.PostInitScript}} {
		if sc.path == "" {
			continue
		}
		var f ScriptFact
		if d, err := digestScript(sc.phase, sc.path); err != nil {
			f.Err = err.Error()
		} else {
			f.Digest = d
		}
		h.Scripts[scriptKey(sc.phase, sc.path)] = f
	}
	// The same lookup setup does (it refuses root); an unknown user leaves
	// the uid out of the plan, and setup fails on the lookup first.
	if a, err := account.Lookup(s.User, s.Group); err == nil {
		uid := uint32(a.UID)
		h.UID = &uid
	}
	return h
}
