package launcher

// TeardownCmd removes the instance's network.
type TeardownCmd struct {
	ConfigFlag
}

func (c *TeardownCmd) Run(g *Globals) error { return errorf(ExitBug, "teardown: not implemented yet") }
