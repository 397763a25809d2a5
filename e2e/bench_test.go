package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks print the sandboxed figure next to its bare baseline, measured
// in the same run, and the difference or ratio as extra metrics:
//
//	make bench   (root; see README "Benchmarks")

// timeRuns runs argv n times and returns the mean wall time.
func timeRuns(b *testing.B, n int, argv ...string) time.Duration {
	b.Helper()
	start := time.Now()
	for i := 0; i < n; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkStartup: `run -- /bin/true` against bare /bin/true and against
// bubblewrap with a comparable read-only system and a read-write project.
// landrun (github.com/zouuup/landrun) would be the other peer, but the Go
// module proxy here does not serve it; it is reported as missing.
func BenchmarkStartup(b *testing.B) {
	si := newSandboxInstance(b, "bstart", nil)
	const rounds = 20
	for i := 0; i < b.N; i++ {
		bare := timeRuns(b, rounds, "/bin/true")
		ocnix := timeRuns(b, rounds, launcherBin, "run", "--config", si.specPath, "--", "/bin/true")
		b.ReportMetric(float64(bare.Microseconds())/1000, "bare-ms")
		b.ReportMetric(float64(ocnix.Microseconds())/1000, "ocnix-ms")
		b.ReportMetric(float64((ocnix-bare).Microseconds())/1000, "ocnix-extra-ms")
		if bw, err := exec.LookPath("bwrap"); err == nil {
			bwrap := timeRuns(b, rounds, bw, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
				"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc",
				"--bind", si.dir, si.dir, "--dev", "/dev", "--proc", "/proc", "--unshare-all", "--die-with-parent", "/bin/true")
			b.ReportMetric(float64(bwrap.Microseconds())/1000, "bwrap-ms")
			b.ReportMetric(float64((bwrap-bare).Microseconds())/1000, "bwrap-extra-ms")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkUnixConnect: connect+close to an allowed unix socket through the
// supervisor against the same loop outside the sandbox.
func BenchmarkUnixConnect(b *testing.B) {
	var sock string
	si := newSandboxInstance(b, "bconn", func(in *instance) {
		sock = filepath.Join(in.base, "sock", "good.sock")
		os.MkdirAll(filepath.Dir(sock), 0o755)
		in.spec["sandbox"].(map[string]any)["unixSockets"] = map[string]any{"allow": []any{sock}}
	})
	startBg(b, true, probeBin, "serve-unix", sock, "good")
	const n = "5000"
	for i := 0; i < b.N; i++ {
		bare := probeNs(b, bare(b, "connect-loop", sock, n))
		boxed := probeNs(b, si.probe("connect-loop", sock, n))
		b.ReportMetric(bare/1000, "bare-us")
		b.ReportMetric(boxed/1000, "ocnix-us")
		b.ReportMetric((boxed-bare)/1000, "extra-us")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFileWalk: walk and read a tree of 20 000 files under Landlock
// against bare.
func BenchmarkFileWalk(b *testing.B) {
	si := newSandboxInstance(b, "bwalk", nil)
	tree := filepath.Join(si.dir, "tree")
	for d := 0; d < 200; d++ {
		dir := filepath.Join(tree, strconv.Itoa(d))
		os.MkdirAll(dir, 0o755)
		for f := 0; f < 100; f++ {
			os.WriteFile(filepath.Join(dir, strconv.Itoa(f)), []byte("some file content\n"), 0o644)
		}
	}
	for i := 0; i < b.N; i++ {
		// Fastest of 5 passes each, after a warm-up pass that fills the
		// page and dentry caches.
		bare(b, "walk", tree)
		bare := walkNs(b, bare(b, "walk", tree, "5"))
		boxed := walkNs(b, si.probe("walk", tree, "5"))
		b.ReportMetric(bare/1e6, "bare-ms")
		b.ReportMetric(boxed/1e6, "ocnix-ms")
		b.ReportMetric(boxed/bare, "ratio")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSupervisorRSS: resident memory of the supervisor while a sandboxed
// command runs, idle and while the gate serves a connect loop. anon is the
// supervisor's own memory; file is clean pages of the launcher binary and its
// libraries, shared by every instance on the host (pss counts each shared page
// once per process mapping it, so it shrinks as instances are added).
func BenchmarkSupervisorRSS(b *testing.B) {
	var sock string
	si := newSandboxInstance(b, "brss", func(in *instance) {
		sock = filepath.Join(in.base, "sock", "good.sock")
		os.MkdirAll(filepath.Dir(sock), 0o755)
		in.spec["sandbox"].(map[string]any)["unixSockets"] = map[string]any{"allow": []any{sock}}
	})
	startBg(b, true, probeBin, "serve-unix", sock, "good")
	for i := 0; i < b.N; i++ {
		idle := supervisorMemory(b, si, "/bin/sleep", "3")
		b.ReportMetric(idle.rss, "idle-MiB")
		// 200 000 connects take longer than the sample point on this VM.
		load := supervisorMemory(b, si, probeBin, "connect-loop", sock, "200000")
		b.ReportMetric(load.rss, "load-MiB")
		b.ReportMetric(load.anon, "load-anon-MiB")
		b.ReportMetric(load.file, "load-file-MiB")
		b.ReportMetric(load.pss, "load-pss-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

type memSample struct{ rss, anon, file, pss float64 }

// supervisorMemory starts `run -- argv`, samples the launcher's memory after
// 1.5 s, then stops it with SIGINT (forwarded; the supervisor reaps the child).
func supervisorMemory(b *testing.B, si *sandboxInstance, argv ...string) memSample {
	b.Helper()
	cmd := exec.Command(launcherBin, append([]string{"run", "--config", si.specPath, "--"}, argv...)...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	status, serr := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	rollup, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", cmd.Process.Pid))
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if serr != nil || rerr != nil {
		b.Fatalf("read the supervisor's memory: %v %v (did run exit early?)", serr, rerr)
	}
	kb := func(text, key string) float64 {
		for _, l := range strings.Split(text, "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
				v, _ := strconv.Atoi(f[1])
				return float64(v) / 1024
			}
		}
		b.Fatalf("no %s in the supervisor's memory figures", key)
		return 0
	}
	return memSample{
		rss:  kb(string(status), "VmRSS:"),
		anon: kb(string(status), "RssAnon:"),
		file: kb(string(status), "RssFile:"),
		pss:  kb(string(rollup), "Pss:"),
	}
}

func probeNs(b *testing.B, out string) float64 {
	b.Helper()
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "ok" {
		b.Fatalf("probe printed %q", out)
	}
	v, _ := strconv.ParseFloat(f[1], 64)
	return v
}

func walkNs(b *testing.B, out string) float64 {
	b.Helper()
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "ok" || f[1] != "20000" {
		b.Fatalf("walk printed %q, want 20000 files", out)
	}
	v, _ := strconv.ParseFloat(f[2], 64)
	return v
}
