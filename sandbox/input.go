package sandbox

// Input is everything the sandbox needs from an instance spec. The
// launcher fills it; sandbox never reads the spec itself, so the two
// can be tested alone.
type Input struct {
	Instance       string
	User, Group    string   // names; resolved at Run time, before any fork
	Directory      string   // read-write
	StateDir       string   // read-write; contains TmpDir
	TmpDir         string   // private TMPDIR; empty means StateDir/tmp
	ReadWritePaths []string // read-write; must exist at run time
	ReadOnlyPaths  []string // read and execute; must exist at run time
	// LauncherDir is the launcher's root-owned directory for this instance
	// (its opencode.json); read-only, and skipped while setup has not made it.
	LauncherDir string
	ExecPaths   []string // `path` entries and the command's own file: read+execute
	UnixSockets []string // allow-list: socket files or directories
	ListenPort  int
	BindPorts   []int // sandbox.allowBindPorts
	// SharedNetwork: the instance runs in the host's network namespace (no
	// network isolation), whose abstract unix names and UDP ports host
	// clients use; below Landlock ABI 9 the supervisor then gates bind(2).
	SharedNetwork bool
}

// Command is the program Run starts inside the sandbox. Env is the
// complete environment of the target: nothing from the launcher's own
// environment leaks in, except TMPDIR, which Run sets to Plan.TmpDir.
type Command struct {
	Path string   `json:"path"`
	Args []string `json:"args"` // argv, including argv[0]
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}
