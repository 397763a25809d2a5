package unixgate

import (
	"encoding/binary"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bind performs a gated bind(2) on the caller's behalf (see BindPolicy): it binds our
// copy of the caller's socket to our copy of its address, so what was checked is what
// the kernel gets.
//
// The check follows the socket's family as the kernel holds it (call.domain), not the
// address's sa_family: __inet_bind takes AF_UNSPEC with INADDR_ANY as AF_INET, so a
// check keyed on the caller's family would let any port through.
func (s *server) bind(c call) error {
	switch c.domain {
	case unix.AF_UNIX:
		if addrFamily(c.addr) != unix.AF_UNIX {
			// unix_bind's answer to a short address or a foreign family.
			s.respond(c.id, unix.EINVAL)
			return nil
		}
		return s.bindUnix(c)
	case unix.AF_INET, unix.AF_INET6:
		// sin_port and sin6_port are the same bytes, and the kernel reads the port from
		// there whatever the family says. Shorter addresses are the kernel's EINVAL.
		if len(c.addr) >= 4 {
			port := int(binary.BigEndian.Uint16(c.addr[2:4]))
			if !s.pol.Bind.portAllowed(port) {
				s.denyBind(c, protoName(c.cfd)+" port "+strconv.Itoa(port), "port not allowed (only 0, listen.port and sandbox.allowBindPorts)")
				return nil
			}
		}
		return s.bindAsCaller(c, c.addr)
	case unix.AF_NETLINK:
		return s.bindAsCaller(c, c.addr)
	}
	s.denyDomain(c, "bind")
	return nil
}

// protoName names an inet socket's protocol for the log, from the kernel's view.
func protoName(fd int) string {
	p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case err != nil:
		return "inet"
	case p == unix.IPPROTO_TCP:
		return "TCP"
	case p == unix.IPPROTO_UDP:
		return "UDP"
	}
	return "protocol " + strconv.Itoa(p)
}

// bindUnix refuses abstract names and creates socket files only in the instance's own
// directories, resolving the parent as the caller would (its cwd or root) and binding to
// /proc/self/fd/<pinned parent>/<name>, so a renamed or swapped path cannot redirect it.
func (s *server) bindUnix(c call) error {
	if len(c.addr) == sunPathOffset {
		s.denyBind(c, "@(autobind)", "abstract socket (autobind): the instance shares the host's network namespace")
		return nil
	}
	path, abstract, errno := unixTarget(c.addr)
	switch {
	case errno != 0:
		s.respond(c.id, errno)
		return nil
	case abstract:
		s.denyBind(c, path, "abstract socket: the instance shares the host's network namespace")
		return nil
	}
	dir, name := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, name = path[:i+1], path[i+1:]
	}
	if name == "" || name == "." || name == ".." {
		s.respond(c.id, unix.EINVAL)
		return nil
	}
	dirfd, _, ok, err := s.asCaller(c, path, func(reason string) { s.denyBind(c, path, reason) })
	if !ok {
		return err
	}
	defer unix.Close(dirfd)
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	if path[0] == '/' {
		how.Resolve |= unix.RESOLVE_IN_ROOT
	}
	pfd, err := unix.Openat2(dirfd, dir, &how)
	for try := 0; err == unix.EAGAIN && try < 3; try++ {
		pfd, err = unix.Openat2(dirfd, dir, &how)
	}
	if err != nil {
		// The kernel's own errno for a missing or unsearchable parent.
		s.respond(c.id, supervisorErrno(err))
		return nil
	}
	defer unix.Close(pfd)
	var buf [unix.PathMax]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(pfd), buf[:])
	if err != nil {
		s.respond(c.id, supervisorErrno(err))
		return nil
	}
	if real := string(buf[:n]); !s.pol.mayCreateSocket(real) {
		s.denyBind(c, path, "socket files may only be created in the instance's read-write paths (real directory "+real+")")
		return nil
	}
	target := procFdAddr(pfd)
	target = append(target, '/')
	target = append(target, name...)
	if len(target) > unix.SizeofSockaddrUnix-1 {
		// The pinned form is longer than the caller's name; rare, and never a bypass.
		s.respond(c.id, unix.ENAMETOOLONG)
		return nil
	}
	s.answerBind(c, rawBind(c.cfd, target))
	return nil
}

// bindAsCaller binds with the caller's credentials, so that privileged ports, netlink
// groups and the owner of what is created are the caller's business, not ours.
func (s *server) bindAsCaller(c call, addr []byte) error {
	if _, ok, err := s.becomeCaller(c, func(reason string) { s.denyBind(c, "", reason) }); !ok {
		return err
	}
	s.answerBind(c, rawBind(c.cfd, addr))
	return nil
}

// denyBind answers EACCES, as Landlock does for a denied TCP bind, and logs one line.
func (s *server) denyBind(c call, what, reason string) {
	s.respond(c.id, unix.EACCES)
	ok, suppressed := s.denyLog.allow()
	if !ok {
		return
	}
	attrs := []any{"instance", s.pol.Instance, "addr", what, "tid", c.tid, "reason", reason}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.Warn("unixgate: bind denied", attrs...)
}

// answerBind is answer for binds: a restarted bind after a lost success would fail with
// EINVAL (already bound); the caller gets the success it missed instead.
func (s *server) answerBind(c call, errno unix.Errno) {
	errno = s.lostBind.replayBind(c.at, c.cfd, c.addr, errno)
	s.lostBind.record(c.at, c.cfd, c.addr, errno)
	if err := sendResp(s.fd, c.id, errno); err != nil && err != unix.ENOENT {
		s.log.Debug("unixgate: answer notification", "instance", s.pol.Instance, "err", err)
	}
}

// rawBind binds fd to a raw sockaddr and returns the kernel's errno.
func rawBind(fd int, addr []byte) unix.Errno {
	var p unsafe.Pointer
	if len(addr) > 0 {
		p = unsafe.Pointer(&addr[0])
	}
	_, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(p), uintptr(len(addr)))
	return e
}
