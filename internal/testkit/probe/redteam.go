//go:build linux

package probe

// Probes of the red-team battery (issue 10, item 7). Each tries one escape
// and prints "ok [detail]" or the errno's name, like the rest of the probes;
// the racing ones print counts ("ok benign=N escaped=M ...") so the test can
// insist on escaped=0 while proving the race ran at all.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// redteamVerbs are the red-team battery's verbs (e2e/redteam_test.go).
var redteamVerbs = map[string]Verb{
	"symlink-race":        symlinkRace,
	"hardlink":            func(a []string) (string, error) { return "", unix.Link(a[0], a[1]) },
	"hardlink-procfd":     hardlinkProcFD,
	"hardlink-emptypath":  hardlinkEmptyPath,
	"hardlink-race":       hardlinkRace,
	"rename-in":           func(a []string) (string, error) { return "", unix.Rename(a[0], a[1]) },
	"opath":               opath,
	"reopen":              reopen,
	"readlink":            func(a []string) (string, error) { t, err := os.Readlink(a[0]); return t, unwrap(err) },
	"listdir":             listdir,
	"stat":                statIno,
	"openat2":             openat2,
	"name-to-handle":      nameToHandle,
	"open-by-handle":      openByHandle,
	"ptrace-seize":        ptraceSeize,
	"process-vm-readv":    func(a []string) (string, error) { return processVM(a, false) },
	"process-vm-writev":   func(a []string) (string, error) { return processVM(a, true) },
	"pidfd-open":          pidfdOpen,
	"pidfd-getfd":         pidfdGetfd,
	"pidfd-signal":        pidfdSignal,
	"signal":              signal,
	"tgkill":              tgkill,
	"kill-all":            killAll,
	"connect-denied-loop": connectDeniedLoop,
	"memfd-exec":          memfdExec,
	"memfd-execveat":      memfdExecveat,
	"open-rw":             openRW,
	"userfaultfd":         userfaultfd,
	"perf-event-open":     perfEventOpen,
	"add-key":             addKey,
	"request-key":         requestKey,
	"io-uring-enter":      func(a []string) (string, error) { return ioUring(unix.SYS_IO_URING_ENTER) },
	"io-uring-register":   func(a []string) (string, error) { return ioUring(unix.SYS_IO_URING_REGISTER) },
	"clone3":              clone3,
	"clone":               cloneFlags,
	"unshare":             unshareFlags,
	"setns":               setns,
	"tiocsti":             tiocsti,
	"tioclinux":           tioclinux,
	"open-tty":            openTTY,
	"list-fds":            listFDs,
	"at-parent":           atParent,
	"serve-abstract":      serveAbstract,
	"connect-abstract":    connectAbstract,
	"exchange-loop":       exchangeLoop,
	"signalable":          signalable,
	"connect-from-cwd":    connectFromCwd,
	"connect-procfd":      connectProcFD,
	"sigio":               sigio,
	"tiocsti-hi":          tiocstiHi,
	"shm-read":            shmRead,
	"shm-roundtrip":       shmRoundtrip,
	"mq-read":             mqRead,
	"nodeath-loop":        nodeathLoop,
	"ia32":                ia32,
	"socket-hi":           socketHi,
	"openat2-create":      openat2Create,
	"openat-create":       openatCreate,
	"read-own-pid":        readOwnPid,
	"tmpfile-create":      tmpfileCreate,
	"mknod-create":        mknodCreate,
	"tmpfile-open-legacy": tmpfileOpenLegacy,
	"mknod-legacy":        mknodLegacy,
	"mkdir-mode":          mkdirMode,
	"execveat-opath":      execveatOPath,
	"truncate-procfd":     truncateProcFD,
}

// readIno opens p with flags and returns the inode it got (and the bytes it
// read for O_RDONLY), so a race can tell which file an open reached.
func openIno(p string, flags int) (uint64, error) {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func inoOf(p string) (uint64, error) {
	var st unix.Stat_t
	err := unix.Stat(p, &st)
	return st.Ino, err
}

// swapLink keeps replacing link (atomically, by rename) with a symlink to
// a and then to b until stop is set.
func swapLink(link, a, b string, stop *atomic.Bool) {
	runtime.LockOSThread()
	tmp := link + ".tmp"
	for !stop.Load() {
		for _, t := range []string{a, b} {
			unix.Unlink(tmp)
			if unix.Symlink(t, tmp) == nil {
				unix.Rename(tmp, link)
			}
		}
	}
}

// raceSetup points link at benign before the swapper starts, and gives
// the Go runtime two threads: GOMAXPROCS follows the cgroup CPU quota,
// and with one P the swapper and the opener would take turns instead of
// racing.
func raceSetup(link, benign string) {
	runtime.GOMAXPROCS(max(2, runtime.NumCPU()))
	unix.Unlink(link)
	unix.Symlink(benign, link)
}

// symlinkRace: RWDIR TARGET N MODE, MODE one of read, write (a symlink
// rwdir/link flips between rwdir/benign and TARGET), dir-read (rwdir/d
// flips between rwdir/benigndir and TARGET's directory; the open goes
// through d/<base of TARGET>). Prints benign/escaped/denied/other counts;
// escaped counts opens that reached TARGET's inode.
func symlinkRace(a []string) (string, error) {
	rw, target, mode := a[0], a[1], a[3]
	n, _ := strconv.Atoi(a[2])
	targetIno, err := inoOf(target)
	if err != nil {
		return "", err
	}
	var link, benign, open string
	switch mode {
	case "read", "write":
		benign = filepath.Join(rw, "benign")
		if err := os.WriteFile(benign, []byte("benign\n"), 0o644); err != nil {
			return "", unwrap(err)
		}
		link = filepath.Join(rw, "link")
		open = link
	case "dir-read":
		bd := filepath.Join(rw, "benigndir")
		if err := os.MkdirAll(bd, 0o755); err != nil {
			return "", unwrap(err)
		}
		benign = bd
		if err := os.WriteFile(filepath.Join(bd, filepath.Base(target)), []byte("benign\n"), 0o644); err != nil {
			return "", unwrap(err)
		}
		link = filepath.Join(rw, "d")
		open = filepath.Join(link, filepath.Base(target))
		target = filepath.Dir(target)
	default:
		return "", fmt.Errorf("mode %q", mode)
	}
	flags := unix.O_RDONLY
	if mode == "write" {
		flags = unix.O_WRONLY | unix.O_APPEND
	}
	raceSetup(link, benign)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { swapLink(link, benign, target, &stop); close(done) }()
	var good, escaped, denied, other int
	var others []string
	// At least n tries, and on until both sides were seen (a loaded
	// machine may not switch threads for a while), at most 50n.
	for i := 0; i < n || (good == 0 || escaped+denied == 0) && i < 50*n; i++ {
		ino, err := openIno(open, flags)
		switch {
		case err == nil && ino == targetIno:
			escaped++
		case err == nil:
			good++
		case errors.Is(err, unix.EACCES):
			denied++
		default:
			other++
			others = appendOnce(others, unix.ErrnoName(err.(unix.Errno)))
		}
	}
	stop.Store(true)
	<-done
	return fmt.Sprintf("benign=%d escaped=%d denied=%d other=%d%s", good, escaped, denied, other, list(others)), nil
}

func appendOnce(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

func list(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return " (" + strings.Join(l, ",") + ")"
}

// hardlinkProcFD: SRC DST. An O_PATH fd is not checked by Landlock; link
// its magic link /proc/self/fd/N into DST (AT_SYMLINK_FOLLOW).
func hardlinkProcFD(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, a[1], unix.AT_SYMLINK_FOLLOW)
}

// hardlinkEmptyPath: SRC DST, linkat(fd, "", AT_EMPTY_PATH), which needs
// CAP_DAC_READ_SEARCH.
func hardlinkEmptyPath(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Linkat(fd, "", unix.AT_FDCWD, a[1], unix.AT_EMPTY_PATH)
}

// hardlinkRace: RWDIR TARGET N. rwdir/src flips between a symlink to an
// inside file and one to TARGET while linkat(..., AT_SYMLINK_FOLLOW)
// links it to rwdir/dst; escaped counts links that got TARGET's inode.
func hardlinkRace(a []string) (string, error) {
	rw, target := a[0], a[1]
	n, _ := strconv.Atoi(a[2])
	targetIno, err := inoOf(target)
	if err != nil {
		return "", err
	}
	inside := filepath.Join(rw, "inside")
	if err := os.WriteFile(inside, []byte("inside\n"), 0o644); err != nil {
		return "", unwrap(err)
	}
	src, dst := filepath.Join(rw, "src"), filepath.Join(rw, "dst")
	raceSetup(src, inside)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { swapLink(src, inside, target, &stop); close(done) }()
	var good, escaped, denied, other int
	var others []string
	for i := 0; i < n || (good == 0 || escaped+denied == 0) && i < 50*n; i++ {
		err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
		switch {
		case err == nil:
			if ino, _ := inoOf(dst); ino == targetIno {
				escaped++
			} else {
				good++
			}
			unix.Unlink(dst)
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			denied++
			others = appendOnce(others, unix.ErrnoName(err.(unix.Errno)))
		default:
			other++
			others = appendOnce(others, unix.ErrnoName(err.(unix.Errno)))
		}
	}
	stop.Store(true)
	<-done
	return fmt.Sprintf("linked=%d escaped=%d denied=%d other=%d%s", good, escaped, denied, other, list(others)), nil
}

func opath(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

// reopen: PATH r|w. Open PATH with O_PATH (which Landlock does not check),
// then reopen it read or write through /proc/self/fd/N.
func reopen(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	flags := unix.O_RDONLY
	if a[1] == "w" {
		flags = unix.O_WRONLY | unix.O_APPEND
	}
	fd2, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd2)
	if flags == unix.O_RDONLY {
		_, err = unix.Read(fd2, make([]byte, 64))
	}
	return "", err
}

func listdir(a []string) (string, error) {
	f, err := os.Open(a[0])
	if err != nil {
		return "", unwrap(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return "", unwrap(err)
	}
	return strconv.Itoa(len(names)), nil
}

func statIno(a []string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(a[0], &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("ino=%d", st.Ino), nil
}

// openat2: DIR NAME RESOLVE[,RESOLVE...] (beneath, in_root, no_magiclinks,
// no_symlinks, no_xdev, none). DIR is opened O_PATH, NAME read through
// openat2 relative to it; RESOLVE "openat" reads it through plain openat
// instead (the sandbox refuses openat2 whole).
func openat2(a []string) (string, error) {
	dfd, err := unix.Open(a[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	var res uint64
	for _, r := range strings.Split(a[2], ",") {
		res |= map[string]uint64{
			"beneath": unix.RESOLVE_BENEATH, "in_root": unix.RESOLVE_IN_ROOT,
			"no_magiclinks": unix.RESOLVE_NO_MAGICLINKS, "no_symlinks": unix.RESOLVE_NO_SYMLINKS,
			"no_xdev": unix.RESOLVE_NO_XDEV, "none": 0,
		}[r]
	}
	var fd int
	if a[2] == "openat" {
		fd, err = unix.Openat(dfd, a[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	} else {
		fd, err = unix.Openat2(dfd, a[1], &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: res})
	}
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	_, err = unix.Read(fd, make([]byte, 64))
	return "", err
}

func nameToHandle(a []string) (string, error) {
	h, mnt, err := unix.NameToHandleAt(unix.AT_FDCWD, a[0], 0)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("type=%d bytes=%d mount=%d", h.Type(), h.Size(), mnt), nil
}

// openByHandle: PATH MOUNTDIR. Needs CAP_DAC_READ_SEARCH, and bypasses
// path-based checks: the handle is taken of PATH, opened relative to
// MOUNTDIR.
func openByHandle(a []string) (string, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, a[0], 0)
	if err != nil {
		return "", err
	}
	mfd, err := unix.Open(a[1], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	_, err = unix.Read(fd, make([]byte, 64))
	return "", err
}

func pidArg(s string) int {
	switch s {
	case "parent":
		return unix.Getppid()
	case "self":
		return unix.Getpid()
	}
	pid, _ := strconv.Atoi(s)
	return pid
}

func ptraceSeize(a []string) (string, error) {
	runtime.LockOSThread()
	pid := pidArg(a[0])
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0)
	if e != 0 {
		return "", e
	}
	unix.PtraceDetach(pid)
	return "", nil
}

// processVM: PID. Reads (or writes back unchanged) 8 bytes of the first
// writable mapping of PID; if its maps cannot be read, a fixed address is
// used, so the syscall is still tried.
func processVM(a []string, write bool) (string, error) {
	pid := pidArg(a[0])
	addr := uintptr(0x10000)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 1 && strings.HasPrefix(f[1], "rw") {
				start, _ := strconv.ParseUint(strings.Split(f[0], "-")[0], 16, 64)
				addr = uintptr(start)
				break
			}
		}
	}
	buf := make([]byte, 8)
	local := []unix.Iovec{{Base: &buf[0], Len: 8}}
	remote := []unix.RemoteIovec{{Base: addr, Len: 8}}
	if _, err := unix.ProcessVMReadv(pid, local, remote, 0); err != nil || !write {
		return "", err
	}
	_, err := unix.ProcessVMWritev(pid, local, remote, 0)
	return "", err
}

func pidfdOpen(a []string) (string, error) {
	fd, err := unix.PidfdOpen(pidArg(a[0]), 0)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

// pidfdGetfd: PID FD. Steal fd FD of PID (the supervisor holds the seccomp
// notify fd and the O_PATH pins of the sockets it connects).
func pidfdGetfd(a []string) (string, error) {
	pfd, err := unix.PidfdOpen(pidArg(a[0]), 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	target, _ := strconv.Atoi(a[1])
	fd, err := unix.PidfdGetfd(pfd, target, 0)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

func sigArg(s string) unix.Signal {
	n, _ := strconv.Atoi(s)
	return unix.Signal(n)
}

func pidfdSignal(a []string) (string, error) {
	pfd, err := unix.PidfdOpen(pidArg(a[0]), 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	return "", unix.PidfdSendSignal(pfd, sigArg(a[1]), nil, 0)
}

func signal(a []string) (string, error) { return "", unix.Kill(pidArg(a[0]), sigArg(a[1])) }

func tgkill(a []string) (string, error) {
	pid := pidArg(a[0])
	return "", unix.Tgkill(pid, pid, sigArg(a[1]))
}

// killAll: SIG. kill(-1, SIG): every process the caller may signal.
func killAll(a []string) (string, error) {
	return "", unix.Kill(-1, sigArg(a[0]))
}

// connectDeniedLoop: PATH OUTDIR. Connects to the denied socket PATH in a
// loop, and so does a descendant that leaves the process group (setsid)
// to outlive the supervisor. Each writes its pid to OUTDIR/<pid>.pid
// and, every 100 tries, its counts to OUTDIR/<pid>.count. Runs until
// killed; the test kills the supervisor underneath.
func connectDeniedLoop(a []string) (string, error) {
	path, out := a[0], a[1]
	role := "descendant"
	if len(a) > 2 {
		role = a[2]
	}
	if len(a) < 3 {
		role = "target"
		cmd := exec.Command("/proc/self/exe", "connect-denied-loop", path, out, "descendant")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return "", unwrap(err)
		}
	}
	// Files are named by this process's pid; the pid file holds the role
	// and the pidID, which the test outside translates into a host pid.
	pid := os.Getpid()
	id, err := pidID(pid)
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(out, strconv.Itoa(pid)+".pid.tmp")
	os.WriteFile(tmp, []byte(role+" "+id), 0o644)
	os.Rename(tmp, filepath.Join(out, strconv.Itoa(pid)+".pid"))
	counts := map[string]int{}
	for i := 1; ; i++ {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		unix.Close(fd)
		name := "ok"
		var errno unix.Errno
		if errors.As(err, &errno) {
			name = unix.ErrnoName(errno)
		}
		counts[name]++
		if i%100 == 0 {
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%d ", k, counts[k])
			}
			tmp := filepath.Join(out, strconv.Itoa(pid)+".count.tmp")
			os.WriteFile(tmp, []byte(b.String()), 0o644)
			os.Rename(tmp, filepath.Join(out, strconv.Itoa(pid)+".count"))
		}
	}
}

// memfdCopy copies this program into a fresh memfd (not close-on-exec,
// so /proc/self/fd/N names it in a child too).
func memfdCopy() (int, error) {
	fd, err := unix.MemfdCreate("ocnix-probe", 0)
	if err != nil {
		return -1, err
	}
	b, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		unix.Close(fd)
		return -1, unwrap(err)
	}
	if _, err := unix.Write(fd, b); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// memfdExec: PROBE-ARGS... Runs a copy of this probe from a memfd through
// /proc/self/fd/N with PROBE-ARGS and prints "ok <its output>".
func memfdExec(a []string) (string, error) {
	fd, err := memfdCopy()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("/proc/self/fd/"+strconv.Itoa(fd), a...).Output()
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", pe.Err
		}
		return "", err
	}
	return string(trim(out)), nil
}

// memfdExecveat: PROBE-ARGS... Replaces this process with the memfd copy
// through execveat(fd, "", AT_EMPTY_PATH); the copy prints its own verdict.
func memfdExecveat(a []string) (string, error) {
	fd, err := memfdCopy()
	if err != nil {
		return "", err
	}
	argv, err := syscall.SlicePtrFromStrings(append([]string{"probe"}, a...))
	if err != nil {
		return "", err
	}
	envp, _ := syscall.SlicePtrFromStrings(os.Environ())
	empty, _ := unix.BytePtrFromString("")
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return "", e
}

func openRW(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

func userfaultfd(a []string) (string, error) {
	// UFFD_USER_MODE_ONLY: what an unprivileged process may ask for.
	const uffdUserModeOnly = 1
	r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|uffdUserModeOnly, 0, 0)
	if e != 0 {
		return "", e
	}
	unix.Close(int(r))
	return "", nil
}

// perfEventOpen asks for a software counter of itself, user space only:
// what perf_event_paranoid=2 allows an unprivileged process.
func perfEventOpen(a []string) (string, error) {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_TASK_CLOCK,
		Bits:   unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

func addKey(a []string) (string, error) {
	_, err := unix.AddKey("user", "ocnix-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	return "", err
}

func requestKey(a []string) (string, error) {
	_, err := unix.RequestKey("user", "ocnix-probe-absent", "", unix.KEY_SPEC_PROCESS_KEYRING)
	return "", err
}

// ioUring calls io_uring_enter or io_uring_register on a fresh ring, or on
// fd -1 when io_uring_setup is refused (the syscall is still tried).
func ioUring(nr uintptr) (string, error) {
	var params [120]byte
	fd := ^uintptr(0)
	if r, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0); e == 0 {
		fd = r
		defer unix.Close(int(r))
	}
	var e unix.Errno
	if nr == unix.SYS_IO_URING_ENTER {
		_, _, e = unix.Syscall6(nr, fd, 0, 0, 0, 0, 0)
	} else {
		// IORING_REGISTER_PROBE with a zeroed probe buffer.
		var probe [16 + 256*8]byte
		_, _, e = unix.Syscall6(nr, fd, 8, uintptr(unsafe.Pointer(&probe[0])), 256, 0, 0)
	}
	if e != 0 {
		return "", e
	}
	return "", nil
}

var nsFlags = map[string]uintptr{
	"none": 0, "newuser": unix.CLONE_NEWUSER, "newnet": unix.CLONE_NEWNET,
	"newns": unix.CLONE_NEWNS, "newpid": unix.CLONE_NEWPID, "newipc": unix.CLONE_NEWIPC,
	"newuts": unix.CLONE_NEWUTS, "newcgroup": unix.CLONE_NEWCGROUP, "newtime": unix.CLONE_NEWTIME,
}

func parseNS(s string) uintptr {
	var f uintptr
	for _, n := range strings.Split(s, ",") {
		f |= nsFlags[n]
	}
	return f
}

// cloneArgs is struct clone_args (CLONE_ARGS_SIZE_VER2).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

// clone3: FLAGS. The raw syscall, whose flags live in memory seccomp cannot
// read. The child only calls exit_group: nothing of the Go runtime may run
// in it.
//
//go:norace
func clone3(a []string) (string, error) {
	runtime.LockOSThread()
	args := cloneArgs{flags: uint64(parseNS(a[0])), exitSignal: uint64(unix.SIGCHLD)}
	r, _, e := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	if e != 0 {
		return "", e
	}
	if r == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(r), &ws, 0, nil)
	return "", nil
}

// cloneFlags: FLAGS. clone(2) through the Go runtime's fork.
func cloneFlags(a []string) (string, error) {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
		Sys: &syscall.SysProcAttr{Cloneflags: parseNS(a[0])},
	})
	if err != nil {
		return "", err
	}
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	return "", nil
}

func unshareFlags(a []string) (string, error) {
	runtime.LockOSThread() // the thread is tainted if it works; the probe exits
	return "", unix.Unshare(int(parseNS(a[0])))
}

// setns: PATH. Open a namespace file and join it.
func setns(a []string) (string, error) {
	runtime.LockOSThread()
	fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Setns(fd, 0)
}

// tiocsti: FD CHARS. Push CHARS into the input of the terminal on FD.
func tiocsti(a []string) (string, error) {
	fd, _ := strconv.Atoi(a[0])
	for i := 0; i < len(a[1]); i++ {
		c := a[1][i]
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCSTI, uintptr(unsafe.Pointer(&c))); e != 0 {
			return "", e
		}
	}
	return "", nil
}

// tioclinux: FD. TIOCL_GETSHIFTSTATE, a harmless subcode.
func tioclinux(a []string) (string, error) {
	fd, _ := strconv.Atoi(a[0])
	arg := [2]byte{6, 0}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCLINUX, uintptr(unsafe.Pointer(&arg[0])))
	if e != 0 {
		return "", e
	}
	return "", nil
}

func openTTY(a []string) (string, error) {
	fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return "", err
}

// listFDs prints the fds this process was started with ("0,1,2"), with
// the target of any beyond 2. Raw syscalls: os.ReadDir would open the
// runtime's epoll fds first.
func listFDs(a []string) (string, error) {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	buf := make([]byte, 8192)
	var names []string
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	var fds []string
	for _, name := range names {
		n, _ := strconv.Atoi(name)
		switch {
		case n == dfd:
		case n > 2:
			t, _ := unix.Readlink("/proc/self/fd/"+name, buf)
			fds = append(fds, name+"="+string(buf[:max(t, 0)]))
		default:
			fds = append(fds, name)
		}
	}
	return strings.Join(fds, ","), nil
}

// atParent: VERB ARGS... runs probe VERB with "{parent}" in ARGS replaced
// by this process's parent pid (inside the sandbox: the supervisor).
//
// Inside the sandbox's PID namespace the supervisor has no pid (getppid()
// is 0): a pid argument that would name it answers ESRCH, as the kernel
// does for a pid that does not exist (0 itself would mean "my process
// group" to kill(2)); in a path it becomes /proc/0/…, which does not exist.
func atParent(a []string) (string, error) {
	ppid := unix.Getppid()
	args := make([]string, len(a)-1)
	for i, s := range a[1:] {
		if s == "{parent}" && ppid == 0 {
			return "", unix.ESRCH
		}
		args[i] = strings.ReplaceAll(s, "{parent}", strconv.Itoa(ppid))
	}
	return verbs[a[0]](args)
}

// serveAbstract: NAME. Listens on the abstract unix name @NAME until killed.
func serveAbstract(a []string) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + a[0]}); err != nil {
		return "", err
	}
	if err := unix.Listen(fd, 16); err != nil {
		return "", err
	}
	fmt.Println("listening")
	for {
		c, _, err := unix.Accept(fd)
		if err != nil {
			return "", err
		}
		unix.Close(c)
	}
}

func connectAbstract(a []string) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + a[0]})
}

// exchangeLoop: A B. Swaps A and B atomically (RENAME_EXCHANGE) until
// killed: an allow-listed directory that is a symlink half of the time.
func exchangeLoop(a []string) (string, error) {
	fmt.Println("listening")
	for {
		if err := unix.Renameat2(unix.AT_FDCWD, a[0], unix.AT_FDCWD, a[1], unix.RENAME_EXCHANGE); err != nil {
			return "", err
		}
	}
}

// signalable lists the processes (pid:comm) this one may send signal 0,
// itself excepted: what kill(-1, SIG) would reach.
func signalable(a []string) (string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return "", unwrap(err)
	}
	var got []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if unix.Kill(pid, 0) == nil {
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			got = append(got, e.Name()+":"+strings.TrimSpace(string(comm)))
		}
	}
	return strings.Join(got, ","), nil
}

// connectFromCwd: DIR NAME. chdir (which Landlock does not restrict) into
// DIR, then connect to NAME, relative or through /proc/self/cwd.
func connectFromCwd(a []string) (string, error) {
	if err := unix.Chdir(a[0]); err != nil {
		return "", err
	}
	return verbs["connect-unix"](a[1:])
}

// connectProcFD: PATH [SUFFIX]. Connect to /proc/self/fd/N+SUFFIX, N an
// O_PATH fd of PATH (a socket, or its directory with SUFFIX "/name").
func connectProcFD(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	suffix := ""
	if len(a) > 1 {
		suffix = a[1]
	}
	return verbs["connect-unix"]([]string{"/proc/self/fd/" + strconv.Itoa(fd) + suffix})
}

// sigio: PID SIG. Make PID the owner of a pipe with O_ASYNC and F_SETSIG
// SIG, then write to it: the kernel sends SIG to PID on our behalf.
func sigio(a []string) (string, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return "", err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, pidArg(a[0])); err != nil {
		return "", err
	}
	n, _ := strconv.Atoi(a[1])
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETSIG, n); err != nil {
		return "", err
	}
	fl, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFL, 0)
	if err != nil {
		return "", err
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETFL, fl|unix.O_ASYNC); err != nil {
		return "", err
	}
	if _, err := unix.Write(p[1], []byte("x")); err != nil {
		return "", err
	}
	time.Sleep(200 * time.Millisecond)
	return "", nil
}

// tiocstiHi: FD CHAR. TIOCSTI with bits set above the 32 the kernel
// reads: a filter comparing all 64 bits would miss it.
func tiocstiHi(a []string) (string, error) {
	fd, _ := strconv.Atoi(a[0])
	c := a[1][0]
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 1<<32|unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	if e != 0 {
		return "", e
	}
	return "", nil
}

// shmRead: KEY. Attach the System V shared memory segment KEY read-only
// and print what it holds.
func shmRead(a []string) (string, error) {
	key, _ := strconv.Atoi(a[0])
	id, err := unix.SysvShmGet(key, 0, 0)
	if err != nil {
		return "", err
	}
	b, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		return "", err
	}
	defer unix.SysvShmDetach(b)
	return strings.TrimRight(string(b[:32]), "\x00"), nil
}

// shmRoundtrip: create a private segment, write, read back, remove.
func shmRoundtrip(a []string) (string, error) {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	if err != nil {
		return "", err
	}
	defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	b, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return "", err
	}
	defer unix.SysvShmDetach(b)
	copy(b, "mine")
	if string(b[:4]) != "mine" {
		return "", fmt.Errorf("read back %q", b[:4])
	}
	return "", nil
}

// mqRead: NAME. Open the POSIX message queue /NAME and receive a message.
func mqRead(a []string) (string, error) {
	name, _ := unix.BytePtrFromString(a[0])
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)), unix.O_RDONLY|unix.O_NONBLOCK, 0, 0, 0, 0)
	if e != 0 {
		return "", e
	}
	defer unix.Close(int(fd))
	buf := make([]byte, 8192)
	n, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	if e != 0 {
		return "", e
	}
	return string(buf[:n]), nil
}

// nodeathLoop: PATH OUTDIR. The target clears its own parent-death signal
// (an ordinary prctl), then loops like connect-denied-loop without a
// descendant.
func nodeathLoop(a []string) (string, error) {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
		return "", err
	}
	return connectDeniedLoop([]string{a[0], a[1], "nodeath"})
}

// ia32: NR ARG. A 32-bit system call (int 0x80, IA-32 emulation) with one
// argument, from a page of machine code: mov eax, NR; mov ebx, ARG;
// int 0x80; ret. Go's register ABI returns RAX as the result. A filter
// for the 64-bit table alone would not see it; ocnix's kills the process.
func ia32(a []string) (string, error) {
	nr, _ := strconv.ParseUint(a[0], 0, 32)
	arg, _ := strconv.ParseUint(a[1], 0, 32)
	code, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return "", err
	}
	prog := []byte{0xb8, 0, 0, 0, 0, 0xbb, 0, 0, 0, 0, 0xcd, 0x80, 0xc3}
	*(*uint32)(unsafe.Pointer(&prog[1])) = uint32(nr)
	*(*uint32)(unsafe.Pointer(&prog[6])) = uint32(arg)
	copy(code, prog)
	if err := unix.Mprotect(code, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return "", err
	}
	entry := uintptr(unsafe.Pointer(&code[0]))
	fn := *(*func() uintptr)(unsafe.Pointer(&struct{ p *uintptr }{&entry}))
	r := int32(fn())
	if r < 0 && r > -4096 {
		return "", unix.Errno(-r)
	}
	return fmt.Sprintf("ret=%d", r), nil
}

// socketHi: FAMILY TYPE PROTO, each with bit 32 set, which the kernel
// drops (the arguments are ints): a filter comparing 64 bits would miss.
func socketHi(a []string) (string, error) {
	var v [3]uintptr
	for i := range v {
		n, _ := strconv.ParseUint(a[i], 0, 32)
		v[i] = uintptr(n) | 1<<32
	}
	fd, _, e := unix.Syscall(unix.SYS_SOCKET, v[0], v[1], v[2])
	if e != 0 {
		return "", e
	}
	unix.Close(int(fd))
	return "", nil
}

func modeOf(p string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("mode=%o", st.Mode&0o7777), nil
}

func octal(s string) uint32 {
	m, _ := strconv.ParseUint(s, 8, 32)
	return uint32(m)
}

// openat2Create: PATH MODE. A creating openat2, whose mode lives in
// struct open_how where seccomp cannot read it.
func openat2Create(a []string) (string, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, a[0], &unix.OpenHow{
		Flags: unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_CLOEXEC,
		Mode:  uint64(octal(a[1])),
	})
	if err != nil {
		return "", err
	}
	unix.Close(fd)
	return modeOf(a[0])
}

// openatCreate: PATH MODE. The openat(O_CREAT) that libc falls back to
// when openat2 says ENOSYS.
func openatCreate(a []string) (string, error) {
	fd, err := unix.Openat(unix.AT_FDCWD, a[0], unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, octal(a[1]))
	if err != nil {
		return "", err
	}
	unix.Close(fd)
	return modeOf(a[0])
}

// readOwnPid: FILE. Read /proc/<own pid>/FILE by number, not through the
// /proc/self link.
func readOwnPid(a []string) (string, error) {
	_, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", os.Getpid(), a[0]))
	return "", unwrap(err)
}

// tmpfileCreate: DIR NAME MODE. An O_TMPFILE open (no O_CREAT) with MODE,
// linked into DIR as NAME.
func tmpfileCreate(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, octal(a[2]))
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	dst := filepath.Join(a[0], a[1])
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW); err != nil {
		return "", err
	}
	return modeOf(dst)
}

// mknodCreate: PATH MODE. A regular file made by mknod, which needs no
// privilege.
func mknodCreate(a []string) (string, error) {
	if err := unix.Mknodat(unix.AT_FDCWD, a[0], unix.S_IFREG|octal(a[1]), 0); err != nil {
		return "", err
	}
	return modeOf(a[0])
}

// tmpfileOpenLegacy: DIR MODE. O_TMPFILE through open(2), not openat, as
// old libcs and raw callers do; reports the unnamed file's mode.
func tmpfileOpenLegacy(a []string) (string, error) {
	p, err := unix.BytePtrFromString(a[0])
	if err != nil {
		return "", err
	}
	r, _, e := unix.Syscall(unix.SYS_OPEN, uintptr(unsafe.Pointer(p)), uintptr(unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC), uintptr(octal(a[1])))
	if e != 0 {
		return "", e
	}
	defer unix.Close(int(r))
	var st unix.Stat_t
	if err := unix.Fstat(int(r), &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("mode=%o", st.Mode&0o7777), nil
}

// mknodLegacy: PATH MODE. A regular file through mknod(2), not mknodat.
func mknodLegacy(a []string) (string, error) {
	p, err := unix.BytePtrFromString(a[0])
	if err != nil {
		return "", err
	}
	if _, _, e := unix.Syscall(unix.SYS_MKNOD, uintptr(unsafe.Pointer(p)), uintptr(unix.S_IFREG|octal(a[1])), 0); e != 0 {
		return "", e
	}
	return modeOf(a[0])
}

func mkdirMode(a []string) (string, error) {
	if err := unix.Mkdir(a[0], octal(a[1])); err != nil {
		return "", err
	}
	return modeOf(a[0])
}

// execveatOPath: PATH ARGS... Replace this process with PATH through an
// O_PATH fd (execveat AT_EMPTY_PATH), or through /proc/self/fd/N when the
// first ARG is "procfd".
func execveatOPath(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH, 0)
	if err != nil {
		return "", err
	}
	args := a[1:]
	if len(args) > 0 && args[0] == "procfd" {
		p := "/proc/self/fd/" + strconv.Itoa(fd)
		return "", unix.Exec(p, append([]string{p}, args[1:]...), os.Environ())
	}
	argv, _ := syscall.SlicePtrFromStrings(append([]string{a[0]}, args...))
	envp, _ := syscall.SlicePtrFromStrings(os.Environ())
	empty, _ := unix.BytePtrFromString("")
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return "", e
}

// truncateProcFD: PATH. truncate(2) by path through the magic link of an
// O_PATH fd.
func truncateProcFD(a []string) (string, error) {
	fd, err := unix.Open(a[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Truncate("/proc/self/fd/"+strconv.Itoa(fd), 0)
}
