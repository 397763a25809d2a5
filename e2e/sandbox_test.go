package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sandboxInstance is an instance with one path of each kind, for the probes.
type sandboxInstance struct {
	*instance
	rw, ro, outside string
}

func newSandboxInstance(t testing.TB, name string, mutate func(in *instance)) *sandboxInstance {
	var si *sandboxInstance
	in := newInstance(t, name, func(in *instance) {
		si = &sandboxInstance{
			instance: in,
			rw:       filepath.Join(in.base, "rw-extra"),
			ro:       filepath.Join(in.base, "ro"),
			outside:  filepath.Join(in.base, "outside"),
		}
		mustRun(t, "install", "-d", "-o", in.user, "-m", "0755", si.rw)
		mustRun(t, "install", "-d", "-m", "0777", si.ro) // DAC would allow writes: Landlock must not
		mustRun(t, "install", "-d", "-m", "0755", si.outside)
		for _, f := range []string{filepath.Join(si.ro, "file"), filepath.Join(si.outside, "secret")} {
			if err := os.WriteFile(f, []byte("data\n"), 0o666); err != nil {
				t.Fatal(err)
			}
			os.Chmod(f, 0o666)
		}
		in.spec["path"] = []any{binDir}
		in.spec["sandbox"] = map[string]any{
			"readWritePaths": []any{si.rw},
			"readOnlyPaths":  []any{si.ro},
		}
		if mutate != nil {
			mutate(in)
		}
	})
	in.setup()
	return si
}

func TestSandboxFilesystem(t *testing.T) {
	si := newSandboxInstance(t, "fs", nil)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"WriteInDirectory", []string{"write", filepath.Join(si.dir, "f")}, "ok"},
		{"WriteInStateDir", []string{"write", filepath.Join(si.stateDir, "f")}, "ok"},
		{"WriteInPrivateTmp", []string{"write", filepath.Join(si.stateDir, "tmp", "f")}, "ok"},
		{"WriteInReadWritePath", []string{"write", filepath.Join(si.rw, "f")}, "ok"},
		{"ReadReadOnlyPath", []string{"read", filepath.Join(si.ro, "file")}, "ok"},
		{"WriteReadOnlyPathDenied", []string{"write", filepath.Join(si.ro, "file")}, "EACCES"},
		{"CreateInReadOnlyPathDenied", []string{"write", filepath.Join(si.ro, "new")}, "EACCES"},
		{"ReadOutsideDenied", []string{"read", filepath.Join(si.outside, "secret")}, "EACCES"},
		{"SharedTmpDenied", []string{"write", "/tmp/ocnix-probe-" + si.name}, "EACCES"},
		{"ReadSystemBaseline", []string{"read", "/etc/hostname"}, "ok"},
		{"ShadowDenied", []string{"read", "/etc/shadow"}, "EACCES"},
		{"WriteEtcDenied", []string{"write", "/etc/ocnix-probe"}, "EACCES"},
		{"ExecSystemBinary", []string{"exec", "/bin/true"}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe(tt.args...); got != tt.want {
				t.Errorf("probe %v = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
	// Positive twin: the same read outside the sandbox works, so the denial
	// above is the sandbox's and not the file's.
	if got := bare(t, "read", filepath.Join(si.outside, "secret")); got != "ok" {
		t.Errorf("bare read of the outside file = %q, want ok", got)
	}
	os.Remove("/tmp/ocnix-probe-" + si.name)

	who := si.probe("whoami")
	out, err := exec.Command("id", "-u", si.user).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid := strings.TrimSpace(string(out))
	gidOut, _ := exec.Command("id", "-g", si.user).Output()
	gid := strings.TrimSpace(string(gidOut))
	if want := fmt.Sprintf("ok uid=%s gid=%s groups=[%s]", uid, gid, gid); who != want {
		t.Errorf("identity in sandbox = %q, want %q", who, want)
	}
}

func TestSandboxSyscallDenials(t *testing.T) {
	si := newSandboxInstance(t, "sys", nil)
	mnt := t.TempDir()
	// A process of the instance's own user outside the sandbox: DAC would let
	// the instance ptrace or signal it; only the sandbox stops it.
	suidFile := filepath.Join(si.dir, "tool")
	if err := os.WriteFile(suidFile, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", si.user, suidFile)
	// setpriv execs (no fork), so the PID is the sleep itself.
	victim := startBg(t, false, "setpriv", "--reuid="+si.user, "--regid="+si.user, "--init-groups", "sleep", "300")
	vpid := strconv.Itoa(victim.Process.Pid)

	tests := []struct {
		name     string
		args     []string
		want     string
		bareWant string // the positive twin outside the sandbox; "" = not applicable
	}{
		{"Mount", []string{"mount", mnt}, "EPERM", "ok"},
		{"UnshareUserNamespace", []string{"unshare", "newuser"}, "EPERM", ""}, // twin below: Go is multithreaded
		{"CloneNewUserNamespace", []string{"clone", "newuser"}, "EPERM", "ok"},
		{"PtraceOtherProcess", []string{"ptrace", vpid}, "EPERM", "ok"},
		{"IoUringSetup", []string{"io-uring-setup"}, "ENOSYS", "ok"},
		{"PacketSocket", []string{"socket", "AF_PACKET", "SOCK_RAW", "0"}, "EAFNOSUPPORT", "ok"},
		{"RawSocket", []string{"socket", "AF_INET", "SOCK_RAW", "IPPROTO_ICMP"}, "EPERM", "ok"},
		{"Keyctl", []string{"keyctl"}, "EPERM", "ok"},
		{"Bpf", []string{"bpf"}, "EPERM", "EINVAL"},                            // EINVAL: the kernel saw the zeroed attr
		{"SignalOutsideSandbox", []string{"signal", vpid, "0"}, "ESRCH", "ok"}, // not in the sandbox's PID namespace (Landlock's scope, EPERM, behind it: sandbox TestSandboxScoping)
		{"SignalSelf", []string{"signal", "self", "0"}, "ok", ""},
		{"UnixDatagramSocket", []string{"socket", "AF_UNIX", "SOCK_DGRAM|SOCK_CLOEXEC", "0"}, "EACCES", "ok"},
		{"UnixStreamSocketpair", []string{"socketpair", "AF_UNIX", "SOCK_STREAM|SOCK_CLOEXEC"}, "ok", ""},
		{"ChmodSetUID", []string{"chmod", suidFile, "4755"}, "EPERM", "ok"},
		{"ChmodSetGID", []string{"chmod", suidFile, "2755"}, "EPERM", "ok"},
		{"Fchmodat2SetUID", []string{"fchmodat2", suidFile, "4755"}, "EPERM", "ok"},
		{"ChmodPlain", []string{"chmod", suidFile, "0755"}, "ok", ""},
		{"CreateSetUID", []string{"create-mode", filepath.Join(si.dir, "created-suid"), "4755"}, "EPERM", ""},
		{"CreatePlain", []string{"create-mode", filepath.Join(si.dir, "created-plain"), "0755"}, "ok", ""},
	}
	if out, err := exec.Command("unshare", "-U", "true").CombinedOutput(); err != nil {
		t.Errorf("twin of UnshareUserNamespace: unshare -U outside the sandbox: %v %s", err, out)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := si.probe(tt.args...); got != tt.want {
				t.Errorf("sandboxed probe %v = %q, want %q", tt.args, got, tt.want)
			}
			if tt.bareWant != "" {
				got := bare(t, tt.args...)
				if tt.name == "Mount" && got == "ok" {
					exec.Command("umount", mnt).Run()
				}
				if got != tt.bareWant {
					t.Errorf("bare probe %v = %q, want %q (the positive twin)", tt.args, got, tt.bareWant)
				}
			}
		})
	}
}
