package unixgate

import (
	"errors"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// asCaller prepares an on-behalf call for path: it opens the caller thread's root (or
// reuses it, see rootCache), or its cwd when path is relative, then takes the caller's
// credentials (becomeCaller). On ok the caller closes dirfd and acts with cr.
func (s *server) asCaller(c call, path string, deny func(reason string)) (dirfd int, cr creds, ok bool, err error) {
	leaf := "root"
	if path[0] != '/' {
		leaf = "cwd" // per thread, so by tid
	}
	c.key = taskKey(c.pidfd)
	cached := false
	if leaf == "root" {
		dirfd = s.roots.get(c.key)
		cached = dirfd >= 0
	}
	if !cached {
		// Opened with the loop thread's CAP_SYS_PTRACE, which it keeps even while acting
		// as a caller: a caller that made itself non-dumpable (ssh-agent, gpg-agent) could
		// not open its own /proc/<tid>/root with only its own credentials.
		dirfd, err = unix.Open(procPath(c.tid, leaf), unix.O_PATH|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
		if err != nil {
			s.respond(c.id, supervisorErrno(err))
			return -1, cr, false, nil
		}
	}
	if cr, ok, err = s.becomeCaller(c, deny); !ok {
		unix.Close(dirfd)
		return -1, cr, false, err
	}
	if leaf == "root" && !cached {
		// The tid named the caller when the root was opened: becomeCaller checked.
		s.roots.put(c.key, dirfd)
	}
	return dirfd, cr, true, nil
}

// becomeCaller takes the caller's credentials on this locked thread, once it has checked
// that the caller still waits (what was read about its tid is trusted only then). When
// not ok the call has been answered, or has gone away; err, when set, means this thread
// is tainted and must stop serving. deny reports a failure to take the credentials.
func (s *server) becomeCaller(c call, deny func(reason string)) (cr creds, ok bool, err error) {
	cr, err = s.cache.lookup(c.tid, c.pidfd, c.key)
	if err != nil {
		s.respond(c.id, supervisorErrno(err))
		return cr, false, nil
	}
	if !idValid(s.fd, c.id) {
		return cr, false, nil
	}
	if err := s.ident.become(cr); err != nil {
		deny("take caller credentials: " + err.Error())
		if errors.Is(err, errTainted) {
			return cr, false, err
		}
		return cr, false, nil
	}
	return cr, true, nil
}

// connectUnix decides an AF_UNIX connect and performs it when allowed.
func (s *server) connectUnix(c call) error {
	path, abstract, errno := unixTarget(c.addr)
	switch {
	case errno != 0:
		s.respond(c.id, errno)
		return nil
	case abstract:
		s.deny(c, path, "", "abstract socket")
		return nil
	}
	dirfd, cr, ok, err := s.asCaller(c, path, func(reason string) { s.deny(c, path, "", reason) })
	if !ok {
		return err
	}
	defer unix.Close(dirfd)
	ofd, realPath, reason := s.pin(dirfd, path)
	if reason != "" {
		if ofd >= 0 {
			unix.Close(ofd)
		}
		s.deny(c, path, realPath, reason)
		return nil
	}
	errno, slow, old := unixConnectOnce(c.cfd, ofd, isBlocking(c.cfd))
	if !slow {
		unix.Close(ofd)
		s.answer(c, errno)
		return nil
	}
	// The server's backlog is full and the caller blocks: wait in a worker.
	limit := UnixConnectTimeout
	if old != nil && (old.Sec != 0 || old.Usec != 0) {
		limit = min(limit, time.Duration(old.Nano()))
	}
	deadline := time.Now().Add(limit)
	w := c.forWorker()
	*c.owned = false
	if !s.spawn(func() { s.unixWorker(w, ofd, cr, old, deadline) }) {
		*c.owned = true
		unix.Close(ofd)
		s.respond(c.id, unix.EAGAIN)
	}
	return nil
}

// pin resolves path as the caller would (relative to dirfd, which is the caller's cwd,
// or inside its root for absolute paths) and checks the pinned object. It runs with the
// caller's credentials. A non-empty reason means deny; ofd is then closed by the caller.
func (s *server) pin(dirfd int, path string) (ofd int, realPath, reason string) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	if path[0] == '/' {
		how.Resolve |= unix.RESOLVE_IN_ROOT
	}
	ofd, err := unix.Openat2(dirfd, path, &how)
	for try := 0; err == unix.EAGAIN && try < 3; try++ {
		// RESOLVE_IN_ROOT saw a concurrent rename or mount; the kernel asks to retry.
		ofd, err = unix.Openat2(dirfd, path, &how)
	}
	if err != nil {
		// ENOENT too: see the package doc on why missing paths are EACCES.
		return -1, "", "resolve: " + err.Error()
	}
	var st unix.Stat_t
	if err := unix.Fstat(ofd, &st); err != nil {
		return ofd, "", "stat: " + err.Error()
	}
	if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		if entry := s.allowed.check(&st); entry != "" {
			return ofd, entry, ""
		}
	}
	var buf [unix.PathMax]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(ofd), buf[:])
	if err != nil {
		return ofd, "", "read real path: " + err.Error()
	}
	realPath = string(buf[:n])
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return ofd, realPath, "not a socket"
	}
	if !s.pol.Allowed(realPath) {
		return ofd, realPath, "not allowed"
	}
	s.allowed.learn(realPath, &st)
	return ofd, realPath, ""
}

// unixConnectOnce connects cfd to the pinned socket without letting a full backlog block
// the notification loop: a blocking socket gets a one-tick SO_SNDTIMEO for this attempt
// (the kernel rounds up to one jiffy) and slow reports that it must continue in a worker.
// old is the caller's own SO_SNDTIMEO, restored before returning.
func unixConnectOnce(cfd, ofd int, blocking bool) (errno unix.Errno, slow bool, old *unix.Timeval) {
	target := procFdAddr(ofd)
	if !blocking {
		return rawConnect(cfd, target), false, nil
	}
	old, err := unix.GetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_SNDTIMEO)
	if err != nil {
		return supervisorErrno(err), false, nil
	}
	setSndTimeo(cfd, time.Microsecond)
	errno = rawConnect(cfd, target)
	restoreSndTimeo(cfd, old)
	return errno, errno == unix.EAGAIN || errno == unix.EINTR, old
}

// unixWorker keeps connecting in slices until the backlog has room, the caller gives up,
// or the deadline passes (then EAGAIN, the kernel's errno for an expired SO_SNDTIMEO).
func (s *server) unixWorker(c call, ofd int, cr creds, old *unix.Timeval, deadline time.Time) {
	id, cfd := c.id, c.cfd
	defer unix.Close(cfd)
	defer unix.Close(ofd)
	// This thread takes the caller's identity; see threadIdentity.
	runtime.LockOSThread()
	ti := newThreadIdentity(&s.self)
	defer func() {
		if ti.restore() == nil {
			runtime.UnlockOSThread()
		} // else the goroutine ends locked and the runtime retires the thread
	}()
	if err := ti.become(cr); err != nil {
		s.respond(id, unix.EACCES)
		s.log.Warn("unixgate: connect denied", "instance", s.pol.Instance,
			"reason", "take caller credentials: "+err.Error())
		return
	}
	target := procFdAddr(ofd)
	errno := unix.EAGAIN
	for {
		slice := min(waitSlice, time.Until(deadline))
		if slice <= 0 {
			errno = unix.EAGAIN
			break
		}
		setSndTimeo(cfd, slice)
		errno = rawConnect(cfd, target)
		restoreSndTimeo(cfd, old)
		if errno != unix.EAGAIN && errno != unix.EINTR {
			break
		}
		if !idValid(s.fd, id) {
			return
		}
		if s.ctx.Err() != nil {
			errno = unix.EINTR
			break
		}
	}
	s.answer(c, errno)
}

// nscdSockets are where glibc looks for nscd (NixOS links /var/run to /run).
var nscdSockets = []string{"/run/nscd/socket", "/var/run/nscd/socket"}

func isNameServiceProbe(p string) bool {
	for _, s := range nscdSockets {
		if p == s {
			return true
		}
	}
	return false
}

// deny answers EACCES and writes the one log line for a denied connect. A fd that is not
// a socket gets ENOTSOCK, as the kernel checks that before the address; the check is only
// made here because an allowed connect on a non-socket fails with ENOTSOCK by itself.
func (s *server) deny(c call, path, realPath, reason string) {
	if _, err := unix.GetsockoptInt(c.cfd, unix.SOL_SOCKET, unix.SO_TYPE); err == unix.ENOTSOCK {
		s.respond(c.id, unix.ENOTSOCK)
		return
	}
	s.respond(c.id, unix.EACCES)
	attrs := []any{"instance", s.pol.Instance, "path", path, "tid", c.tid, "reason", reason}
	if realPath != "" && realPath != path {
		attrs = append(attrs, "real", realPath)
	}
	// A socket that does not exist is answered EACCES like a denied one (so
	// that the instance cannot probe for files it cannot see), but it is no
	// policy decision: glibc tries nscd's socket on every user lookup, so a
	// warning per miss would bury the denials that matter.
	if reason == "resolve: "+unix.ENOENT.Error() {
		s.log.Debug("unixgate: connect to a missing socket", attrs...)
		return
	}
	// Likewise nscd, which is running on NixOS: glibc connects to it before
	// every passwd, group or hosts lookup and falls back to the files when
	// refused. Denying it is the point (its hosts cache would resolve names
	// with the host's network, outside the instance netns); warning about
	// it on every `ls -l` is not.
	if isNameServiceProbe(path) || isNameServiceProbe(realPath) {
		s.log.Debug("unixgate: connect to nscd denied (expected; glibc falls back to the files)", attrs...)
		return
	}
	ok, suppressed := s.denyLog.allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.Warn("unixgate: connect denied", attrs...)
}
