package sandbox

/*
#include <stdlib.h>
#include "guard_linux.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guardStages names where the guard or the server failed (guard_linux.h).
var guardStages = map[int32]string{
	C.OCNIX_STAGE_GUARD:     "guard: arm the parent-death signal, get a session or chdir",
	C.OCNIX_STAGE_PROC:      "guard: mount the PID namespace's /proc",
	C.OCNIX_STAGE_SIGMASK:   "unblock signals",
	C.OCNIX_STAGE_SETSID:    "new session",
	C.OCNIX_STAGE_SETGROUPS: "setgroups",
	C.OCNIX_STAGE_SETGID:    "setresgid",
	C.OCNIX_STAGE_SETUID:    "setresuid",
	C.OCNIX_STAGE_PDEATHSIG: "arm the parent-death signal",
	C.OCNIX_STAGE_CHDIR:     "chdir",
	C.OCNIX_STAGE_EXEC:      "exec",
	C.OCNIX_STAGE_SCOPE:     "landlock_restrict_self with the server's signal scope",
}

func stageError(stage int32, errno syscall.Errno) error {
	what, ok := guardStages[stage]
	if !ok {
		what = fmt.Sprintf("stage %d", stage)
	}
	return fmt.Errorf("%s: %w", what, errno)
}

// startGuard starts the guard (guard_linux.c) from the calling thread,
// which must be locked, still unconfined, in a mount namespace of its own
// and have unshared CLONE_NEWPID: the guard is pid 1 of the new PID
// namespace, root, and mounts that namespace's proc on /proc of the
// thread's mount namespace before it reports. It then only reaps orphans
// until it is killed. startGuard returns the guard's pid (in the caller's
// PID namespace) once /proc is mounted; on error the guard has been
// killed and reaped.
//
// The guard is a raw clone, not a second program: it costs a fork, and it
// never execs.
func startGuard() (int, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return -1, fmt.Errorf("sandbox: error pipe for the guard: %w", err)
	}
	defer unix.Close(p[0])
	parent, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		unix.Close(p[1])
		return -1, fmt.Errorf("sandbox: pidfd of the supervisor: %w", err)
	}
	pid := int(C.ocnix_start_guard(C.int(p[1]), C.int(parent)))
	unix.Close(p[1])
	unix.Close(parent)
	if pid < 0 {
		return -1, fmt.Errorf("sandbox: start the PID namespace's guard: %w", syscall.Errno(-pid))
	}
	var msg [8]byte
	n, err := readFull(p[0], msg[:])
	if err == nil && n == len(msg) && binary.NativeEndian.Uint32(msg[:4]) == C.OCNIX_STAGE_OK {
		return pid, nil
	}
	killGuard(pid)
	if err != nil || n != len(msg) {
		return -1, fmt.Errorf("sandbox: start the PID namespace's guard: read its error pipe (%d bytes): %v", n, err)
	}
	stage := int32(binary.NativeEndian.Uint32(msg[:4]))
	errno := syscall.Errno(binary.NativeEndian.Uint32(msg[4:]))
	return -1, fmt.Errorf("sandbox: start the PID namespace's guard: %w", stageError(stage, errno))
}

// killGuard kills the guard, which makes the kernel kill everything left
// in its PID namespace, and reaps it. It must run on a thread outside the
// sandbox's Landlock domain (the signal scope), and only once the server
// has been reaped: the dying guard waits until every process of its
// namespace has been, and the server's parent is the supervisor.
func killGuard(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// startServer starts cmd from the calling (locked, confined) thread,
// switching to cred (nil: nothing to switch), in the thread's PID
// namespace for children (with a guard, the guard's, where it is pid 2),
// and restricted last with the Landlock ruleset scopefd when it is not
// -1. It returns the server's pid in the caller's PID namespace once cmd
// has been exec'd.
//
// Go's syscall.ForkExec cannot do this: its Pdeathsig check compares
// getppid(2) with the parent's pid, and a child whose parent is outside
// its PID namespace sees 0, so it would kill itself. The C child checks
// the supervisor's pidfd instead and otherwise does what ForkExec does:
// vfork, session, user switch, parent-death signal, chdir, execve.
func startServer(cmd Command, dir string, cred *syscall.Credential, scopefd int) (int, error) {
	var free []unsafe.Pointer
	defer func() {
		for _, p := range free {
			C.free(p)
		}
	}()
	cstr := func(s string) *C.char {
		p := C.CString(s)
		free = append(free, unsafe.Pointer(p))
		return p
	}
	cvec := func(ss []string) **C.char {
		v := (**C.char)(C.calloc(C.size_t(len(ss)+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		free = append(free, unsafe.Pointer(v))
		s := unsafe.Slice(v, len(ss)+1)
		for i, x := range ss {
			s[i] = cstr(x)
		}
		return v
	}
	// In C memory: the vfork child reads it while Go goes on.
	a := (*C.struct_ocnix_server_args)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_ocnix_server_args{}))))
	free = append(free, unsafe.Pointer(a))
	a.path, a.argv, a.envp, a.dir = cstr(cmd.Path), cvec(cmd.Args), cvec(cmd.Env), cstr(dir)
	if cred != nil {
		a.drop = 1
		a.uid, a.gid = C.uid_t(cred.Uid), C.gid_t(cred.Gid)
		if n := len(cred.Groups); n > 0 {
			g := (*C.gid_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.gid_t(0)))))
			free = append(free, unsafe.Pointer(g))
			for i, x := range cred.Groups {
				unsafe.Slice(g, n)[i] = C.gid_t(x)
			}
			a.ngroups, a.groups = C.size_t(n), g
		}
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return -1, fmt.Errorf("sandbox: error pipe for the server: %w", err)
	}
	defer unix.Close(p[0])
	parent, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		unix.Close(p[1])
		return -1, fmt.Errorf("sandbox: pidfd of the supervisor: %w", err)
	}
	a.errfd, a.parentfd, a.scopefd = C.int(p[1]), C.int(parent), C.int(scopefd)
	pid := int(C.ocnix_start_server(a))
	unix.Close(p[1])
	unix.Close(parent)
	if pid < 0 {
		return -1, fmt.Errorf("sandbox: start %q in %q: fork: %w", cmd.Path, dir, syscall.Errno(-pid))
	}
	// EOF: the server has exec'd (its copy of the write end was
	// close-on-exec).
	var msg [8]byte
	n, err := readFull(p[0], msg[:])
	if err == nil && n == 0 {
		return pid, nil
	}
	var ws unix.WaitStatus
	for {
		if _, werr := unix.Wait4(pid, &ws, 0, nil); !errors.Is(werr, unix.EINTR) {
			break
		}
	}
	if err != nil || n != len(msg) {
		return -1, fmt.Errorf("sandbox: start %q in %q: read the error pipe (%d bytes): %v", cmd.Path, dir, n, err)
	}
	stage := int32(binary.NativeEndian.Uint32(msg[:4]))
	errno := syscall.Errno(binary.NativeEndian.Uint32(msg[4:]))
	if stage == C.OCNIX_STAGE_EXEC {
		return -1, fmt.Errorf("sandbox: start %q in %q: %w", cmd.Path, dir, errno)
	}
	return -1, fmt.Errorf("sandbox: start %q in %q: %w", cmd.Path, dir, stageError(stage, errno))
}

// readFull reads until buf is full or EOF.
func readFull(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}
