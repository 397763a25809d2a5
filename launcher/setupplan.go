package launcher

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ocnix/ocnix/internal/exitcode"
)

// SetupSection is what setup converges, as plain data, in the order setup
// applies it: directories, path checks, the network (Plan.Network), the
// pre-init script, the files, the post-init script. Setup reads nothing
// else: explain prints this value and setup applies the same value.
type SetupSection struct {
	Directories []DirStep    `json:"directories"`
	Checks      []PathCheck  `json:"checks"`
	InitScripts []InitScript `json:"initScripts,omitempty"`
	// StateIDFile holds the id of stateDir that every stamp records
	// (initscripts.go); set when there is an init script.
	StateIDFile string     `json:"stateIdFile,omitempty"`
	Files       []FileStep `json:"files"`
	// LockWaitSeconds is how long a setup waits for another setup of the
	// same instance: it outlasts a legitimate one running both scripts to
	// their timeout, so a queued setup only gives up on a stuck one.
	LockWaitSeconds int `json:"lockWaitSeconds"`
}

// Mode is a file mode that reads as octal in explain ("0750").
type Mode uint32

func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

func (m Mode) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

func (m *Mode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return fmt.Errorf("mode %q: %w", s, err)
	}
	*m = Mode(n)
	return nil
}

// Where a directory lives decides how setup may touch it.
const (
	// InStateDir: the instance owns the tree and may have planted links, so
	// setup walks it with openat(O_NOFOLLOW) from stateDir's root-owned parent.
	InStateDir = "stateDir"
	// InLauncherDir: root's own directory for the instance (privdir.go).
	InLauncherDir = "launcher"
)

// DirStep is one directory setup creates or fixes. Owner and Group are
// names: the plan is made where the accounts may not exist yet (a Nix build).
type DirStep struct {
	Path   string `json:"path"`
	Within string `json:"within"` // InStateDir or InLauncherDir
	Owner  string `json:"owner"`
	Group  string `json:"group"`
	Mode   Mode   `json:"mode"`
}

// Access that a PathCheck asks of the kernel with the instance's credentials.
const (
	AccessExists = ""    // existence only, as root
	AccessRWX    = "rwx" // the project directory
	AccessExec   = "x"   // an init script
	// AccessRootOpen: root can open it as it does for run, without
	// following a link anyone but root could plant (safefs.OpenTrustedPath).
	AccessRootOpen = "root-open"
)

// PathCheck is a path the sandbox will grant or run, verified before
// anything runs in it. Setup never creates or chowns these: they belong to
// the operator.
type PathCheck struct {
	Key    string `json:"key"`
	Path   string `json:"path"`
	Access string `json:"access,omitempty"`
}

// FileStep is a file setup writes atomically when its content differs.
type FileStep struct {
	// Within is InLauncherDir (root's, the default) or InStateDir (the
	// instance's own file, owned by it).
	Within string `json:"within,omitempty"`
	Path   string `json:"path"`
	Owner  string `json:"owner"`
	Group  string `json:"group"`
	Mode   Mode   `json:"mode"`
	// From names the plan field the content is rendered from; explain shows
	// that field, so the bytes themselves are not repeated.
	From    string `json:"from"`
	SHA256  string `json:"sha256"`
	Content []byte `json:"-"`
}

// InitScript is one of preInitScript/postInitScript as setup runs it. Digest
// covers (phase, path, content) and decides whether the script runs again
// (initscripts.go); it is read when the plan is made, so explain shows the
// digest that setup compares with its stamp.
type InitScript struct {
	Phase   string `json:"phase"` // pre or post
	Key     string `json:"key"`   // spec key, for messages
	Path    string `json:"path"`
	Timeout int    `json:"timeoutSeconds"`
	Stamp   string `json:"stamp"`
	Digest  string `json:"digest,omitempty"`
	// DigestError says why the script could not be read (explain on a
	// machine without it, say); setup refuses to run with it set.
	DigestError string `json:"digestError,omitempty"`
}

func (s InitScript) timeout() time.Duration { return time.Duration(s.Timeout) * time.Second }

// ScriptFacts are the digests of the spec's init scripts on this host, read
// once (hostFor) so that buildPlan stays pure.
type ScriptFacts map[string]ScriptFact

// ScriptFact is the digest of one script, or why it could not be read.
type ScriptFact struct {
	Digest string `json:"digest,omitempty"`
	Err    string `json:"error,omitempty"`
}

func scriptKey(phase, path string) string { return phase + "\x00" + path }

// buildSetup derives the setup section from the spec, the layout and the
// composed opencode.json.
func buildSetup(s *Spec, l Layout, h Host, config []byte) SetupSection {
	var ss SetupSection
	for _, d := range l.Dirs() {
		ss.Directories = append(ss.Directories, DirStep{Path: d, Within: InStateDir, Owner: s.User, Group: s.Group, Mode: 0o700})
	}
	ss.Directories = append(ss.Directories, DirStep{Path: l.Private, Within: InLauncherDir, Owner: "root", Group: s.Group, Mode: privateDirMode})

	ss.Checks = append(ss.Checks, PathCheck{Key: "directory", Path: s.Directory, Access: AccessRWX})
	for i, p := range s.Sandbox.ReadWritePaths {
		ss.Checks = append(ss.Checks, PathCheck{Key: fmt.Sprintf("sandbox.readWritePaths[%d]", i), Path: p})
	}
	for i, p := range s.Sandbox.ReadOnlyPaths {
		ss.Checks = append(ss.Checks, PathCheck{Key: fmt.Sprintf("sandbox.readOnlyPaths[%d]", i), Path: p})
	}
	// Opened, not read: the run child reads it, so secrets never pass here.
	if s.EnvironmentFile != "" {
		ss.Checks = append(ss.Checks, PathCheck{Key: "environmentFile", Path: s.EnvironmentFile, Access: AccessRootOpen})
	}
	for _, sc := range []struct{ phase, key, path string }{
		{"pre", "preInitScript", s.PreInitScript},
		{"post", "postInitScript", s.PostInitScript},
	} {
		if sc.path == "" {
			continue
		}
		ss.Checks = append(ss.Checks, PathCheck{Key: sc.key, Path: sc.path, Access: AccessExec})
		is := InitScript{Phase: sc.phase, Key: sc.key, Path: sc.path, Timeout: s.InitScriptTimeout, Stamp: filepath.Join(l.Private, stampName(sc.phase))}
		if f, ok := h.Scripts[scriptKey(sc.phase, sc.path)]; ok {
			is.Digest, is.DigestError = f.Digest, f.Err
		} else {
			is.DigestError = "not read (the plan was made without host facts)"
		}
		ss.InitScripts = append(ss.InitScripts, is)
		ss.StateIDFile = filepath.Join(l.StateDir, stateIDFile)
	}

	sum := sha256.Sum256(config)
	ss.Files = append(ss.Files, FileStep{
		Path: l.ConfigFile, Owner: "root", Group: s.Group, Mode: privateReadMode,
		From: "opencodeConfig", SHA256: hex.EncodeToString(sum[:]), Content: config,
	})
	lsum := sha256.Sum256([]byte(pluginLockJSON))
	ss.Files = append(ss.Files, FileStep{
		Within: InStateDir, Path: l.PluginLock(), Owner: s.User, Group: s.Group, Mode: 0o600,
		From: "no runtime plugin install", SHA256: hex.EncodeToString(lsum[:]), Content: []byte(pluginLockJSON),
	})
	ss.LockWaitSeconds = 2*s.InitScriptTimeout + 60
	return ss
}

// initScript returns the plan's script of phase, if it has one.
func (ss SetupSection) initScript(phase string) (InitScript, bool) {
	for _, s := range ss.InitScripts {
		if s.Phase == phase {
			return s, true
		}
	}
	return InitScript{}, false
}

// configFile is the opencode.json step.
func (ss SetupSection) configFile() (FileStep, error) {
	for _, f := range ss.Files {
		if f.From == "opencodeConfig" {
			return f, nil
		}
	}
	return FileStep{}, exitcode.Bugf("%w", fmt.Errorf("the plan has no opencode.json"))
}

// String renders the section for explain, step by step in setup's order.
func (ss SetupSection) String() string {
	var b strings.Builder
	b.WriteString("\n# setup (as root, in this order; waits up to " + strconv.Itoa(ss.LockWaitSeconds) + "s for another setup of this instance)\n")
	b.WriteString("  1. directories\n")
	for _, d := range ss.Directories {
		note := "the instance's"
		if d.Within == InLauncherDir {
			note = "the launcher's: the instance reads it, never writes it"
		}
		fmt.Fprintf(&b, "     %s %s %s:%s (%s)\n", d.Path, d.Mode, d.Owner, d.Group, note)
	}
	b.WriteString("  2. checks\n")
	for _, c := range ss.Checks {
		what := "exists"
		switch c.Access {
		case AccessRWX:
			what = "the instance user can read, write and enter it"
		case AccessExec:
			what = "the instance user can execute it"
		case AccessRootOpen:
			what = "a regular file that root opens through root-owned directories, following no link but root's (not read here)"
		}
		fmt.Fprintf(&b, "     %s %s: %s\n", c.Key, c.Path, what)
	}
	b.WriteString("  3. network (# network below)\n")
	step := 4
	script := func(phase string) {
		sc, ok := ss.initScript(phase)
		if !ok {
			fmt.Fprintf(&b, "  %d. no %s-init script (its stamp is removed)\n", step, phase)
			step++
			return
		}
		digest := sc.Digest
		if sc.DigestError != "" {
			digest = "UNREADABLE: " + sc.DigestError
		}
		fmt.Fprintf(&b, "  %d. %s %s, as the instance user in this sandbox and netns, timeout %ds,\n     when its digest %s differs from the stamp %s\n     or the stamp names another stateDir than %s (or none)\n", step, sc.Key, sc.Path, sc.Timeout, digest, sc.Stamp, ss.StateIDFile)
		step++
	}
	script("pre")
	fmt.Fprintf(&b, "  %d. files\n", step)
	step++
	for _, f := range ss.Files {
		fmt.Fprintf(&b, "     %s %s %s:%s from %s (sha256 %s)\n", f.Path, f.Mode, f.Owner, f.Group, f.From, f.SHA256)
	}
	script("post")
	fmt.Fprintf(&b, "  then the record %s (%s root:<group>): run refuses to start after a failed setup\n", lastSetupFile, Mode(privateReadMode))
	return b.String()
}
