package sandbox

// Input is everything the sandbox needs from an instance spec. The
// launcher fills it; sandbox never reads the spec itself, so the two
// can be tested alone.
//
// Check reports a problem of a field under the key of the spec field it
// comes from, in the spec's JSON spelling; the key is given after each
// field ("[i]" is the index in the list).
type Input struct {
	Instance    string // name
	User, Group string // user, group; names, resolved at Run time, before any fork
	Directory   string // directory; read-write
	StateDir    string // stateDir; read-write; contains TmpDir
	// TmpDir is the private TMPDIR; empty means StateDir/tmp. Derived
	// from stateDir, so its problems are keyed stateDir.
	TmpDir         string
	ReadWritePaths []string // sandbox.readWritePaths[i]; read-write; must exist at run time
	ReadOnlyPaths  []string // sandbox.readOnlyPaths[i]; read and execute; must exist at run time
	// LauncherDir is the launcher's root-owned directory for this instance
	// (its opencode.json); read-only, and skipped while setup has not made it.
	// The launcher derives it from the name; Check does not look at it.
	LauncherDir string
	ExecPaths   []string // path[i]: the spec's `path` entries; read+execute
	// CommandPaths are the server command's own file and, for `run --`,
	// the program run instead: read+execute, keyed command.
	CommandPaths []string
	UnixSockets  []string // sandbox.unixSockets.allow[i]: socket files or directories
	ListenPort   int      // listen.port
	BindPorts    []int    // sandbox.allowBindPorts[i]
	// SharedNetwork: the instance runs in the host's network namespace (no
	// network isolation), whose abstract unix names and UDP ports host
	// clients use; without Landlock resolve_unix the supervisor then gates
	// bind(2).
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
