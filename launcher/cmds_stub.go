package launcher

// RunCmd runs the server or a debug command in the sandbox.
type RunCmd struct {
	ConfigFlag
	DryRun bool     `name:"dry-run" help:"Print the plan that run would apply (same as explain) and exit."`
	JSON   bool     `name:"json" help:"With --dry-run: print the plan as JSON."`
	Cmd    []string `arg:"" optional:"" passthrough:"" help:"Command to run instead of the server, after --."`
}

func (c *RunCmd) Run(g *Globals) error { return errorf(ExitBug, "run: not implemented yet") }

// TeardownCmd removes the instance's network.
type TeardownCmd struct {
	ConfigFlag
}

func (c *TeardownCmd) Run(g *Globals) error { return errorf(ExitBug, "teardown: not implemented yet") }
