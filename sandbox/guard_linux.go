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
	C.OCNIX_STAGE_GUARD:     "guard: arm the parent-death signal or get a session",
	C.OCNIX_STAGE_FORK:      "guard: fork the server",
	C.OCNIX_STAGE_SIGMASK:   "unblock signals",
	C.OCNIX_STAGE_SETSID:    "new session",
	C.OCNIX_STAGE_SETGROUPS: "setgroups",
	C.OCNIX_STAGE_SETGID:    "setresgid",
	C.OCNIX_STAGE_SETUID:    "setresuid",
	C.OCNIX_STAGE_PDEATHSIG: "arm the parent-death signal",
	C.OCNIX_STAGE_CHDIR:     "chdir",
	C.OCNIX_STAGE_EXEC:      "exec",
}

// startGuard starts the guard (guard_linux.c) from the calling thread,
// which must be locked, confined and have unshared CLONE_NEWPID: the
// guard is pid 1 of the new PID namespace, inherits the thread's
// namespaces, Landlock domain, seccomp filter and no_new_privs, keeps
// uid 0, and starts cmd as its only child, switching to cred (nil:
// nothing to switch). It returns the guard's pid (in the caller's PID
// namespace) once cmd has been exec'd, or where it failed.
//
// The guard is a small C program, not a re-executed launcher: it costs
// a clone, not a Go runtime start, and Landlock need not allow executing
// the launcher.
func startGuard(cmd Command, dir string, cred *syscall.Credential) (int, error) {
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
	a := C.struct_ocnix_guard_args{
		path: cstr(cmd.Path),
		argv: cvec(cmd.Args),
		envp: cvec(cmd.Env),
		dir:  cstr(dir),
	}
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
		return -1, fmt.Errorf("sandbox: error pipe for the guard: %w", err)
	}
	defer unix.Close(p[0])
	parent, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		unix.Close(p[1])
		return -1, fmt.Errorf("sandbox: pidfd of the supervisor: %w", err)
	}
	a.errfd, a.parentfd = C.int(p[1]), C.int(parent)
	pid := int(C.ocnix_start_guard(&a))
	unix.Close(p[1])
	unix.Close(parent)
	if pid < 0 {
		return -1, fmt.Errorf("sandbox: start the PID namespace's guard: %w", syscall.Errno(-pid))
	}
	// EOF: the server has exec'd (its copy of the write end was
	// close-on-exec) and the guard has closed its own.
	var msg [8]byte
	n, err := readFull(p[0], msg[:])
	if err == nil && n == 0 {
		return pid, nil
	}
	unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		if _, werr := unix.Wait4(pid, &ws, 0, nil); !errors.Is(werr, unix.EINTR) {
			break
		}
	}
	if err != nil || n != len(msg) {
		return -1, fmt.Errorf("sandbox: start %q in %q: read the guard's error pipe (%d bytes): %v", cmd.Path, dir, n, err)
	}
	stage := int32(binary.NativeEndian.Uint32(msg[:4]))
	errno := syscall.Errno(binary.NativeEndian.Uint32(msg[4:]))
	if stage == C.OCNIX_STAGE_EXEC {
		return -1, fmt.Errorf("sandbox: start %q in %q: %w", cmd.Path, dir, errno)
	}
	what, ok := guardStages[stage]
	if !ok {
		what = fmt.Sprintf("stage %d", stage)
	}
	return -1, fmt.Errorf("sandbox: start %q in %q: %s: %w", cmd.Path, dir, what, errno)
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
