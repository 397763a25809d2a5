package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ocnix/ocnix/internal/childproc"
	"github.com/ocnix/ocnix/internal/envfile"
	"github.com/ocnix/ocnix/netpolicy"
	"github.com/ocnix/ocnix/sandbox"
)

// recorder is the applier of the unit tests: it records every step with its
// arguments and plays back a host (stamps, script exit codes, the record of
// the last setup, opencode.json on disk) without touching the machine, so
// that what setup, run and teardown decide is tested without root.
type recorder struct {
	calls []string

	plans   []*Plan // the plan each command began with
	dirs    []DirStep
	checks  []PathCheck
	nets    []netpolicy.Plan
	files   []FileStep
	started []sandbox.Plan
	command sandbox.Command

	// The host it pretends to be.
	stamps       map[string]stamp // phase -> stamp
	stateIDs     int              // ids made: a new stateDir each time stateDirID is reset
	stateDirID   string           // the id in the stateDir it pretends to have; "" = none (wiped)
	scriptStatus map[string]int   // phase -> exit status
	failCheck    string           // key of a PathCheck that fails
	setupFailed  string           // non-empty: the last setup failed with this
	onDisk       []byte           // opencode.json as run would read it
	envFile      []envfile.Var
	credDir      string // $CREDENTIALS_DIRECTORY
	records      []string
}

func newRecorder() *recorder {
	return &recorder{stamps: map[string]stamp{}, scriptStatus: map[string]int{}}
}

func (r *recorder) call(format string, args ...any) {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *recorder) begin(p *Plan) error { r.plans = append(r.plans, p); r.call("begin"); return nil }
func (r *recorder) lookup(u, g string) (identity, error) {
	r.call("lookup %s:%s", u, g)
	return identity{user: u, group: g, uid: 1000, gid: 1000, groups: []int{1000}}, nil
}
func (r *recorder) lock(_ context.Context, name string, wait time.Duration) (func(), error) {
	r.call("lock %s %s", name, wait)
	return func() { r.call("unlock") }, nil
}
func (r *recorder) ensureDirs(d []DirStep, _ identity) error {
	r.dirs = append(r.dirs, d...)
	r.call("dirs %d", len(d))
	return nil
}
func (r *recorder) sweep() error                   { r.call("sweep"); return nil }
func (r *recorder) migrateLegacy(dir string) error { r.call("migrate %s", dir); return nil }
func (r *recorder) record(result, reason string, _ identity) error {
	r.records = append(r.records, strings.TrimSpace(result+" "+reason))
	r.call("record %s", result)
	return nil
}
func (r *recorder) check(c PathCheck, _ identity) error {
	r.checks = append(r.checks, c)
	r.call("check %s", c.Key)
	if c.Key == r.failCheck {
		return errorf(ExitNoInput, "%s %s does not exist", c.Key, c.Path)
	}
	return nil
}
func (r *recorder) network(np netpolicy.Plan) ([]string, error) {
	r.nets = append(r.nets, np)
	r.call("network enable=%v", np.Enable)
	return nil, nil
}
func (r *recorder) scriptResolver(context.Context, *Plan) func() {
	r.call("resolver")
	return func() { r.call("resolver stop") }
}
func (r *recorder) stateID(path string) (string, error) {
	if r.stateDirID == "" {
		r.stateIDs++
		r.stateDirID = fmt.Sprintf("%032x", r.stateIDs)
	}
	r.call("state id %s", filepath.Base(path))
	return r.stateDirID, nil
}
func (r *recorder) readStamp(sc InitScript) (stamp, error) {
	r.call("read stamp %s", sc.Phase)
	return r.stamps[sc.Phase], nil
}
func (r *recorder) removeStamp(phase string) error {
	delete(r.stamps, phase)
	r.call("remove stamp %s", phase)
	return nil
}
func (r *recorder) writeStamp(phase string, s stamp) error {
	r.stamps[phase] = s
	r.call("write stamp %s", phase)
	return nil
}
func (r *recorder) runScript(_ context.Context, _ *Plan, sc InitScript) (childproc.Result, []string, error) {
	r.call("run %s %s", sc.Phase, sc.Path)
	return childproc.Result{Status: r.scriptStatus[sc.Phase]}, []string{"output of " + sc.Phase}, nil
}
func (r *recorder) writeFile(f FileStep, _ identity) (bool, error) {
	r.files = append(r.files, f)
	if f.From == "opencodeConfig" {
		r.onDisk = f.Content
	}
	r.call("write %s", filepath.Base(f.Path))
	return true, nil
}
func (r *recorder) close() { r.call("close") }

func (r *recorder) checkCaller(p *Plan) error {
	r.plans = append(r.plans, p)
	r.call("caller %s", p.User)
	return nil
}
func (r *recorder) lastSetup(Layout) (bool, string, error) {
	r.call("last setup")
	return r.setupFailed != "", r.setupFailed, nil
}
func (r *recorder) stateReady(Layout) error { r.call("state ready"); return nil }
func (r *recorder) credentialsDir() string  { return r.credDir }
func (r *recorder) readEnvFile(path string) ([]envfile.Var, error) {
	r.call("env file %s", path)
	return r.envFile, nil
}
func (r *recorder) readConfig(f FileStep) ([]byte, error) {
	r.call("read %s", filepath.Base(f.Path))
	if r.onDisk == nil {
		return nil, fmt.Errorf("%s: %w", f.Path, os.ErrNotExist)
	}
	return r.onDisk, nil
}
func (r *recorder) enterNetwork(np netpolicy.Plan) error {
	r.nets = append(r.nets, np)
	r.call("enter %s", np.Netns)
	return nil
}
func (r *recorder) privateProc() error                 { r.call("private proc"); return nil }
func (r *recorder) probeResolver(netpolicy.Plan) error { return nil }
func (r *recorder) start(_ context.Context, sp sandbox.Plan, cmd sandbox.Command, _ *slog.Logger) (int, error) {
	r.started = append(r.started, sp)
	r.command = cmd
	r.call("start %s", cmd.Path)
	return 0, nil
}
func (r *recorder) teardownNetwork(np netpolicy.Plan) error {
	r.nets = append(r.nets, np)
	r.call("teardown %s", np.Netns)
	return nil
}

// testSpecFile writes a spec whose paths exist on this machine (so the
// sandbox plan builds without root) and returns its path.
func testSpecFile(t *testing.T, mutate func(map[string]any)) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"project", "state"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := map[string]any{
		"name":      "rec",
		"user":      "opencode-rec",
		"group":     "opencode-rec",
		"directory": filepath.Join(base, "project"),
		"stateDir":  filepath.Join(base, "state", "rec"),
		"command":   []string{"/bin/true"},
		"listen":    map[string]any{"address": "127.0.0.1", "port": 18999},
	}
	for _, ph := range []string{"pre", "post"} {
		p := filepath.Join(base, ph+".sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+ph+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		spec[ph+"InitScript"] = p
	}
	if mutate != nil {
		mutate(spec)
	}
	b, _ := json.Marshal(spec)
	path := filepath.Join(base, "spec.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func testPlan(t *testing.T, mutate func(map[string]any)) *Plan {
	t.Helper()
	s, err := loadFile(testSpecFile(t, mutate))
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPlan(s, hostFor(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runSetup(t *testing.T, p *Plan, r *recorder, rerun bool) error {
	t.Helper()
	st := &setup{plan: p, sys: r, rerunInit: rerun, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return st.run(context.Background())
}

func TestSetupAppliesThePlanInOrder(t *testing.T) {
	p := testPlan(t, nil)
	r := newRecorder()
	if err := runSetup(t, p, r, false); err != nil {
		t.Fatal(err)
	}
	pre, _ := p.Setup.initScript("pre")
	post, _ := p.Setup.initScript("post")
	want := []string{
		"begin", "lookup opencode-rec:opencode-rec", fmt.Sprintf("lock rec %s", time.Duration(p.Setup.LockWaitSeconds)*time.Second),
		"dirs 9", "sweep", "migrate " + p.Layout.StateDir, "record running", "state id " + stateIDFile,
		"check directory", "check preInitScript", "check postInitScript",
		"network enable=false", "resolver",
		"read stamp pre", "remove stamp pre", "run pre " + pre.Path, "write stamp pre",
		"write opencode.json", "write package-lock.json",
		"read stamp post", "remove stamp post", "run post " + post.Path, "write stamp post",
		"resolver stop", "record ok", "close", "unlock",
	}
	if d := cmp.Diff(want, r.calls); d != "" {
		t.Errorf("setup's steps (-want +got):\n%s", d)
	}
	// What was applied is the plan's, value for value.
	if d := cmp.Diff(p.Setup.Directories, r.dirs); d != "" {
		t.Errorf("directories applied differ from the plan:\n%s", d)
	}
	if d := cmp.Diff(p.Setup.Checks, r.checks); d != "" {
		t.Errorf("checks applied differ from the plan:\n%s", d)
	}
	if d := cmp.Diff(p.Setup.Files, r.files); d != "" {
		t.Errorf("files written differ from the plan:\n%s", d)
	}
	if r.stamps["pre"].Digest != pre.Digest || r.stamps["post"].Digest != post.Digest || pre.Digest == "" || r.stamps["pre"].State != r.stateDirID {
		t.Errorf("stamps %v, want the plan's digests %s and %s", r.stamps, pre.Digest, post.Digest)
	}

	// A second setup of the same plan runs no script.
	r.calls = nil
	if err := runSetup(t, p, r, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.calls {
		if strings.HasPrefix(c, "run ") {
			t.Errorf("a script ran again although its stamp matches the plan's digest: %v", r.calls)
		}
	}
	// --rerun-init runs both.
	r.calls = nil
	if err := runSetup(t, p, r, true); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(r.calls, "run "); n != 2 {
		t.Errorf("--rerun-init ran %d scripts, want 2: %v", n, r.calls)
	}
}

// Stamps belong to the stateDir they set up: wiping stateDir (a new id)
// runs both scripts again; the same stateDir does not.
func TestSetupRunsScriptsAgainForANewStateDir(t *testing.T) {
	p := testPlan(t, nil)
	if p.Setup.StateIDFile != filepath.Join(p.Layout.StateDir, stateIDFile) {
		t.Fatalf("plan's state id file = %q, want %s in stateDir", p.Setup.StateIDFile, stateIDFile)
	}
	tests := []struct {
		name    string
		wipe    bool
		wantRun int
	}{
		{name: "SameStateDirRunsNothing", wipe: false, wantRun: 0},
		{name: "WipedStateDirRunsBoth", wipe: true, wantRun: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder()
			if err := runSetup(t, p, r, false); err != nil {
				t.Fatal(err)
			}
			if n := countPrefix(r.calls, "run "); n != 2 {
				t.Fatalf("first setup ran %d scripts, want 2: %v", n, r.calls)
			}
			if tt.wipe {
				r.stateDirID = "" // rm -rf stateDir: the next setup makes a new one
			}
			r.calls = nil
			if err := runSetup(t, p, r, false); err != nil {
				t.Fatal(err)
			}
			if n := countPrefix(r.calls, "run "); n != tt.wantRun {
				t.Errorf("second setup ran %d scripts, want %d: %v", n, tt.wantRun, r.calls)
			}
			for _, ph := range []string{"pre", "post"} {
				if r.stamps[ph].State != r.stateDirID {
					t.Errorf("%s stamp names stateDir %q, want the current %q", ph, r.stamps[ph].State, r.stateDirID)
				}
			}
		})
	}
}

func countPrefix(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func TestSetupFailingPreScriptWritesNothingAndRecordsWhy(t *testing.T) {
	p := testPlan(t, nil)
	r := newRecorder()
	r.scriptStatus["pre"] = 3
	err := runSetup(t, p, r, false)
	if ExitCode(err) != ExitInitScript || !strings.Contains(err.Error(), "output of pre") {
		t.Fatalf("setup = exit %d, %v; want %d with the script's output", ExitCode(err), err, ExitInitScript)
	}
	if len(r.files) != 0 || countPrefix(r.calls, "run post") != 0 || r.stamps["pre"] != (stamp{}) {
		t.Errorf("after a failed pre script: files %v, calls %v, stamps %v; want nothing written, post not run, no stamp", r.files, r.calls, r.stamps)
	}
	last := r.records[len(r.records)-1]
	if !strings.HasPrefix(last, "failed preInitScript") || strings.Contains(last, "output of pre") {
		t.Errorf("record %q: want the failure without the script's output (the instance can read it)", last)
	}
}

func TestSetupStopsAtTheFirstFailedCheck(t *testing.T) {
	p := testPlan(t, nil)
	r := newRecorder()
	r.failCheck = "preInitScript"
	if err := runSetup(t, p, r, false); ExitCode(err) != ExitNoInput {
		t.Fatalf("setup = exit %d, %v; want %d", ExitCode(err), err, ExitNoInput)
	}
	for _, c := range r.calls {
		if strings.HasPrefix(c, "network") || strings.HasPrefix(c, "run ") || strings.HasPrefix(c, "write ") {
			t.Errorf("%q after a failed check: %v", c, r.calls)
		}
	}
}

func TestSetupWithoutScriptsDropsStampsAndUnreadableScriptFails(t *testing.T) {
	p := testPlan(t, func(m map[string]any) { m["preInitScript"], m["postInitScript"] = nil, nil })
	r := newRecorder()
	r.stamps["pre"], r.stamps["post"] = stamp{Digest: "old"}, stamp{Digest: "old"}
	if err := runSetup(t, p, r, false); err != nil {
		t.Fatal(err)
	}
	if len(r.stamps) != 0 || countPrefix(r.calls, "remove stamp") != 2 {
		t.Errorf("stamps %v after removing both scripts (calls %v); want none", r.stamps, r.calls)
	}

	p = testPlan(t, nil)
	for i := range p.Setup.InitScripts {
		if p.Setup.InitScripts[i].Phase == "post" {
			p.Setup.InitScripts[i].Digest, p.Setup.InitScripts[i].DigestError = "", "open it: permission denied"
		}
	}
	r = newRecorder()
	err := runSetup(t, p, r, false)
	if ExitCode(err) != ExitNoInput || !strings.Contains(err.Error(), "postInitScript") {
		t.Fatalf("setup with an unreadable script = exit %d, %v; want %d naming postInitScript", ExitCode(err), err, ExitNoInput)
	}
	if countPrefix(r.calls, "run post") != 0 {
		t.Errorf("a script whose content is unknown ran: %v", r.calls)
	}
}

func TestRunStartsThePlan(t *testing.T) {
	p := testPlan(t, func(m map[string]any) { m["environmentFile"] = "/run/secrets/rec.env" })
	r := newRecorder()
	cfg, _ := p.Setup.configFile()
	r.onDisk = cfg.Content
	r.envFile = []envfile.Var{{Name: "OPENCODE_SERVER_PASSWORD", Value: "s3cret"}}
	var ce *childExit
	if err := runPlan(context.Background(), r, p, false, slog.New(slog.NewTextHandler(io.Discard, nil))); !errors.As(err, &ce) || ce.code != 0 {
		t.Fatalf("run = %v, want the server's exit 0", err)
	}
	want := []string{"caller opencode-rec", "state ready", "last setup", "env file /run/secrets/rec.env", "read opencode.json", "private proc", "start /bin/true"}
	if d := cmp.Diff(want, r.calls); d != "" {
		t.Errorf("run's steps (-want +got):\n%s", d)
	}
	if d := cmp.Diff(p.Sandbox, r.started[0], cmp.Comparer(func(a, b sandbox.Plan) bool { return fmt.Sprint(a) == fmt.Sprint(b) })); d != "" {
		t.Errorf("the sandbox started is not the plan's:\n%s", d)
	}
	if r.command.Dir != p.Directory || r.command.Path != p.Argv[0] || !contains(r.command.Env, "OPENCODE_SERVER_PASSWORD=s3cret") {
		t.Errorf("command %+v: want the plan's argv and cwd and the env file's variables", r.command)
	}

	// Refusals: a failed setup, a stale opencode.json. Nothing starts.
	for name, mutate := range map[string]func(*recorder){
		"FailedSetup": func(r *recorder) { r.setupFailed = "pre script exited 1" },
		"StaleConfig": func(r *recorder) { r.onDisk = []byte("{}\n") },
	} {
		t.Run(name, func(t *testing.T) {
			r := newRecorder()
			r.onDisk = cfg.Content
			mutate(r)
			err := runPlan(context.Background(), r, p, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if ExitCode(err) != ExitInitScript || len(r.started) != 0 {
				t.Errorf("run = exit %d, %v, started %d; want %d and nothing started", ExitCode(err), err, len(r.started), ExitInitScript)
			}
		})
	}
}

// One spec serves every unit: run reads environmentFile from the unit's
// credential when systemd passes one, from the spec's path otherwise.
func TestEnvFileSource(t *testing.T) {
	const spec = "/run/secrets/rec.env"
	withCred := t.TempDir()
	if err := os.WriteFile(filepath.Join(withCred, EnvFileCredential), []byte("A=1\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	without := t.TempDir()
	tests := []struct {
		name, specPath, credential, credDir, want string
	}{
		{name: "NoCredentialsDirectory", specPath: spec, credential: EnvFileCredential, want: spec},
		{name: "CredentialPresent", specPath: spec, credential: EnvFileCredential, credDir: withCred, want: filepath.Join(withCred, EnvFileCredential)},
		{name: "CredentialAbsent", specPath: spec, credential: EnvFileCredential, credDir: without, want: spec},
		{name: "RelativeDirectoryIgnored", specPath: spec, credential: EnvFileCredential, credDir: "creds", want: spec},
		{name: "NoEnvironmentFile", specPath: "", credential: "", credDir: withCred, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := envFileSource(tt.specPath, tt.credential, tt.credDir); got != tt.want {
				t.Errorf("envFileSource(%q, %q, %q) = %q, want %q", tt.specPath, tt.credential, tt.credDir, got, tt.want)
			}
		})
	}

	// run reads the credential's path and names it.
	p := testPlan(t, func(m map[string]any) { m["environmentFile"] = spec })
	if p.EnvironmentCredential != EnvFileCredential {
		t.Fatalf("plan's environmentCredential = %q, want %q", p.EnvironmentCredential, EnvFileCredential)
	}
	cfg, _ := p.Setup.configFile()
	r := newRecorder()
	r.onDisk, r.credDir = cfg.Content, withCred
	var ce *childExit
	if err := runPlan(context.Background(), r, p, false, slog.New(slog.NewTextHandler(io.Discard, nil))); !errors.As(err, &ce) {
		t.Fatalf("run = %v, want the server's exit", err)
	}
	if want := "env file " + filepath.Join(withCred, EnvFileCredential); !contains(r.calls, want) {
		t.Errorf("run's steps %v lack %q", r.calls, want)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRunEntersTheNetnsOfThePlan(t *testing.T) {
	p := testPlan(t, func(m map[string]any) {
		m["networkIsolation"] = map[string]any{"enable": true, "outboundAllowCidrs": []string{"192.0.2.0/24"}}
	})
	r := newRecorder()
	cfg, _ := p.Setup.configFile()
	r.onDisk = cfg.Content
	runPlan(context.Background(), r, p, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if countPrefix(r.calls, "enter "+p.Network.Netns) != 1 || len(r.nets) != 1 {
		t.Fatalf("run with isolation: %v; want it to enter %s", r.calls, p.Network.Netns)
	}
	if d := cmp.Diff(jsonOf(t, p.Network), jsonOf(t, r.nets[0])); d != "" {
		t.Errorf("the network entered is not the plan's:\n%s", d)
	}
	r = newRecorder()
	if err := teardownPlan(r, p, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"teardown " + p.Network.Netns}, r.calls); d != "" {
		t.Errorf("teardown's steps:\n%s", d)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExplainIsThePlanApplied runs the commands themselves (Main, as
// systemd would) with the recorder as their applier: the plan setup and run
// apply is, byte for byte, the plan explain --json prints, and every value
// they applied is that plan's.
func TestExplainIsThePlanApplied(t *testing.T) {
	spec := testSpecFile(t, func(m map[string]any) {
		m["networkIsolation"] = map[string]any{"enable": true, "outboundAllowCidrs": []string{"192.0.2.0/24"}}
	})
	r := newRecorder()
	old := newApplier
	newApplier = func(string, *slog.Logger, io.Writer) applier { return r }
	t.Cleanup(func() { newApplier = old })

	main := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut.String())
		}
		return out.String()
	}
	explained := main("explain", "--json", "--config", spec)
	main("setup", "--config", spec)
	if code := Main(context.Background(), []string{"run", "--config", spec}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("run: exit %d (%v)", code, r.calls)
	}
	if len(r.plans) != 2 {
		t.Fatalf("the applier saw %d plans, want setup's and run's", len(r.plans))
	}
	for i, cmd := range []string{"setup", "run"} {
		got, err := r.plans[i].JSON()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(strings.TrimSpace(explained), string(got)); d != "" {
			t.Errorf("the plan %s applied is not the one explain printed (-explain +%s):\n%s", cmd, cmd, d)
		}
	}
	var shown Plan
	if err := json.Unmarshal([]byte(explained), &shown); err != nil {
		t.Fatalf("explain --json does not read back as a Plan: %v", err)
	}
	if d := cmp.Diff(jsonOf(t, shown.Setup.Directories), jsonOf(t, r.dirs)); d != "" {
		t.Errorf("directories applied vs explained:\n%s", d)
	}
	if d := cmp.Diff(jsonOf(t, shown.Setup.Files), jsonOf(t, r.files)); d != "" {
		t.Errorf("files applied vs explained:\n%s", d)
	}
	if d := cmp.Diff(jsonOf(t, shown.Network), jsonOf(t, r.nets[0])); d != "" {
		t.Errorf("network set up vs explained:\n%s", d)
	}
	if d := cmp.Diff(jsonOf(t, shown.Sandbox), jsonOf(t, r.started[0])); d != "" {
		t.Errorf("sandbox started vs explained:\n%s", d)
	}
	if d := cmp.Diff(jsonOf(t, shown.OpencodeConfig)+"\n", string(r.onDisk)); d != "" {
		t.Errorf("opencode.json written vs the opencodeConfig explained:\n%s", d)
	}
}
