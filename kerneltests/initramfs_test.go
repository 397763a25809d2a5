//go:build linux

package kerneltests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// useradd, userdel and groupdel as much as testkit.AddUser uses them: the
// guest has busybox, whose adduser takes other flags.
const useraddScript = `#!/bin/sh
for a; do name=$a; done
uid=$(cat /etc/nextuid); echo $((uid+1)) >/etc/nextuid
grep -q "^$name:" /etc/passwd && exit 9
echo "$name:x:$uid:$uid::/nonexistent:/usr/sbin/nologin" >>/etc/passwd
echo "$name:x:$uid:" >>/etc/group
`

const userdelScript = `#!/bin/sh
for a; do name=$a; done
grep -q "^$name:" /etc/passwd || exit 6
sed -i "/^$name:/d" /etc/passwd
sed -i "/^$name:/d" /etc/group
`

const groupdelScript = `#!/bin/sh
for a; do name=$a; done
grep -q "^$name:" /etc/group || exit 6
sed -i "/^$name:/d" /etc/group
`

// initScript is PID 1 of the guest: mount the kernel's file systems, load
// the modules, run each suite between markers the host parses, power off.
func initScript(k kernel) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
while read m; do insmod "/lib/modules/$m" || echo "` + marker + ` insmod $m failed"; done </etc/modules.load
`)
	fmt.Fprintf(&b, "echo \"%s KERNEL $(uname -r) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null) yama=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null)\"\n", marker)
	for _, s := range suites {
		run := s.run
		if k.belowMin && s.belowMin != "" {
			run = s.belowMin
		}
		skip := ""
		if s.skip != "" {
			skip = fmt.Sprintf(" -test.skip '%s'", s.skip)
		}
		fmt.Fprintf(&b, "echo '%s BEGIN %s'\n", marker, s.name)
		fmt.Fprintf(&b, "cd /tmp && OCNIX_TEST_REQUIRE_ROOT=1 /t/%s.test -test.v -test.count=1 -test.timeout 6m -test.run '%s'%s </dev/null 2>&1\n", s.name, run, skip)
		fmt.Fprintf(&b, "echo \"%s END %s rc=$?\"\n", marker, s.name)
	}
	fmt.Fprintf(&b, "echo '%s DONE'\nsync\npoweroff -f\n", marker)
	return b.String()
}

// buildInitramfs writes the guest's root for k, or reuses the one with the
// same content from the cache, and returns its path.
func buildInitramfs(t *testing.T, k kernel, bins map[string]string) string {
	t.Helper()
	files := map[string]cpioEntry{}
	dir := func(p string) {
		for p != "/" && p != "." {
			if _, ok := files[strings.TrimPrefix(p, "/")]; ok {
				return
			}
			files[strings.TrimPrefix(p, "/")] = cpioEntry{mode: sIFDIR | 0o755}
			p = filepath.Dir(p)
		}
	}
	put := func(p string, data []byte, perm uint32) {
		dir(filepath.Dir(p))
		files[strings.TrimPrefix(p, "/")] = cpioEntry{mode: sIFREG | perm, data: data}
	}
	copyIn := func(from, to string) {
		b, err := os.ReadFile(from) // follows symlinks: the libraries' real content
		if err != nil {
			t.Fatal(err)
		}
		put(to, b, 0o755)
	}
	withLibs := func(from, to string) {
		copyIn(from, to)
		for _, l := range ldLibs(t, from) {
			copyIn(l, l)
		}
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/tmp", "/etc", "/t"} {
		dir(d)
	}
	files["tmp"] = cpioEntry{mode: sIFDIR | 0o1777}

	// busybox and its applets, then the real tools over them.
	copyIn("/bin/busybox", "/bin/busybox")
	list, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		t.Fatalf("busybox --list-full: %v", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if _, ok := files[a]; !ok {
			dir(filepath.Dir("/" + a))
			files[a] = cpioEntry{mode: sIFLNK | 0o777, link: "/bin/busybox"}
		}
	}
	// The tests copy /bin/true under another name (an exec-path fixture):
	// busybox's applet would then look for an applet by that name and exit
	// 127, so true is the host's coreutils binary, as on any real host.
	trueBin, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatalf("/bin/true: %v", err)
	}
	withLibs(trueBin, "/bin/true")
	withLibs(trueBin, "/usr/bin/true")
	for _, tool := range []string{"ip", "nft"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found on the host (make deps): the guest's netpolicy tests need it", tool)
		}
		withLibs(p, p)
	}
	for _, s := range suites {
		withLibs(bins[s.name], "/t/"+s.name+".test")
	}
	withLibs(bins["opencode-launcher"], "/usr/bin/opencode-launcher")

	put("/init", []byte(initScript(k)), 0o755)
	put("/usr/sbin/useradd", []byte(useraddScript), 0o755)
	put("/usr/sbin/userdel", []byte(userdelScript), 0o755)
	put("/usr/sbin/groupdel", []byte(groupdelScript), 0o755)
	put("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"), 0o644)
	put("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	put("/etc/nextuid", []byte("900\n"), 0o644)
	// Every host has one; the sandbox's tests read it as a file of the
	// system baseline.
	put("/etc/hostname", []byte("ocnix-kt\n"), 0o644)
	put("/etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644)
	put("/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\nprotocols: files\nservices: files\n"), 0o644)
	put("/etc/resolv.conf", []byte("nameserver 127.0.0.1\n"), 0o644)
	// nft prints protocol numbers by name from /etc/protocols (netbase),
	// as on every real host: without it `meta l4proto tcp` lists as
	// `meta l4proto 6` and the rendering test compares against the wrong text.
	for _, f := range []string{"/etc/protocols", "/etc/services"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s not found on the host (Debian package netbase): the guest's nft needs it to list rules as the host does", f)
		}
		put(f, b, 0o644)
	}

	var load []string
	for _, m := range moduleOrder(t, k) {
		b := readModule(t, filepath.Join(k.modDir, m))
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(m), ".xz"), ".zst"), ".ko") + ".ko"
		put("/lib/modules/"+name, b, 0o644)
		load = append(load, name)
	}
	put("/etc/modules.load", []byte(strings.Join(load, "\n")+"\n"), 0o644)

	var buf bytes.Buffer
	if err := writeCPIO(&buf, files); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cacheDir, "initramfs-"+k.release+"-"+fileHash(buf.Bytes())+".cpio")
	if _, err := os.Stat(path); err == nil {
		t.Logf("initramfs cached: %s", path)
		return path
	}
	old, _ := filepath.Glob(filepath.Join(cacheDir, "initramfs-"+k.release+"-*.cpio"))
	for _, o := range old {
		os.Remove(o)
	}
	if err := os.WriteFile(path+".tmp", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs built: %s (%d MB)", path, buf.Len()>>20)
	return path
}

// moduleOrder is modulesWanted with their dependencies from modules.dep,
// each after what it needs: the order insmod must load them in.
func moduleOrder(t *testing.T, k kernel) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.modDir, "modules.dep"))
	if err != nil {
		t.Fatalf("%s: %v", k.release, err)
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		base := filepath.Base(mod)
		base = strings.TrimSuffix(strings.TrimSuffix(base, ".xz"), ".zst")
		byName[strings.TrimSuffix(base, ".ko")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(m string)
	visit = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		d := deps[m]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i])
		}
		order = append(order, m)
	}
	for _, w := range modulesWanted {
		if m, ok := byName[w]; ok {
			visit(m)
		}
	}
	return order
}

func readModule(t *testing.T, path string) []byte {
	t.Helper()
	var dec []string
	switch {
	case strings.HasSuffix(path, ".xz"):
		dec = []string{"xz", "-dc", path}
	case strings.HasSuffix(path, ".zst"):
		dec = []string{"zstd", "-dc", path}
	default:
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := exec.Command(dec[0], dec[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", dec, err)
	}
	return b
}
