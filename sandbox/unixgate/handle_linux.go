package unixgate

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// handle answers one notification, inline or through a worker. It returns an error only
// when the loop thread must be retired (errTainted).
//
// Order matters: the tid in the notification may be recycled at any moment, so every
// lookup by tid is followed by an ID_VALID check before its result is trusted, and the
// address is read exactly once; every decision uses that copy.
func (s *server) handle(req *notifReq) error {
	id := req.ID
	isBind := req.Data.Nr == unix.SYS_BIND && s.pol.Bind != nil
	if req.Data.Arch != s.arch || (req.Data.Nr != unix.SYS_CONNECT && !isBind) {
		// The filter should only send native connect (and bind when Bind is set);
		// anything else has another ABI.
		s.respond(id, unix.ENOSYS)
		return nil
	}
	tid := int(req.Pid)
	pidfd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if err != nil {
		s.respond(id, supervisorErrno(err))
		return nil
	}
	defer unix.Close(pidfd)
	if !idValid(s.fd, id) {
		return nil
	}
	// Copy the socket before reading the address, so a bad fd gives EBADF as in the kernel.
	cfd, err := unix.PidfdGetfd(pidfd, int(int32(req.Data.Args[0])), 0)
	if err != nil {
		s.respond(id, supervisorErrno(err))
		return nil
	}
	owned := true
	defer func() {
		if owned {
			unix.Close(cfd)
		}
	}()
	// Decide from the kernel's view of the socket, never from the sa_family the caller
	// wrote (DESIGN.md "Deny by default, decided from the kernel's view"). ENOTSOCK here is
	// the kernel's own answer, which it gives before it reads the address.
	domain, err := unix.GetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		s.respond(id, supervisorErrno(err))
		return nil
	}
	alen := int32(req.Data.Args[2])
	if alen < 0 || alen > maxAddrLen {
		s.respond(id, unix.EINVAL)
		return nil
	}
	addr := s.buf[:alen]
	if alen > 0 {
		local := []unix.Iovec{{Base: &s.buf[0], Len: uint64(alen)}}
		remote := []unix.RemoteIovec{{Base: uintptr(req.Data.Args[1]), Len: int(alen)}}
		if n, err := unix.ProcessVMReadv(tid, local, remote, 0); err != nil || n != int(alen) {
			s.respond(id, unix.EFAULT)
			return nil
		}
	}
	c := call{id: id, at: siteOf(req), tid: tid, pidfd: pidfd, cfd: cfd, domain: domain, addr: addr, owned: &owned}
	if isBind {
		return s.bind(c)
	}
	switch domain {
	case unix.AF_UNIX:
		switch addrFamily(addr) {
		case unix.AF_UNIX:
			return s.connectUnix(c)
		case unix.AF_UNSPEC:
			// No path: the kernel disconnects a datagram socket or refuses a
			// stream one (EINVAL); let it say which on our copy.
			s.answer(c, rawConnect(c.cfd, c.addr))
		default:
			// unix_validate_addr's answer to a foreign family.
			s.respond(c.id, unix.EINVAL)
		}
		return nil
	case unix.AF_INET, unix.AF_INET6:
		s.connectInet(c)
		return nil
	case unix.AF_NETLINK:
		return s.connectOther(c)
	}
	// The seccomp socket allow-list makes no other family, but an inherited fd could be one.
	s.denyDomain(c, "connect")
	return nil
}

// denyDomain refuses a call on a socket family the gate does not understand.
func (s *server) denyDomain(c call, op string) {
	s.respond(c.id, unix.EACCES)
	if ok, _ := s.denyLog.allow(); ok {
		s.log.Warn("unixgate: "+op+" denied", "instance", s.pol.Instance, "tid", c.tid,
			"reason", "socket family "+strconv.Itoa(c.domain)+" is not one the gate understands")
	}
}

// call is one notification in progress.
type call struct {
	id    uint64
	at    site // for lostAnswers
	tid   int
	pidfd int
	key   uint64 // pidfs inode of pidfd, once asCaller has read it
	cfd   int    // our copy of the caller's socket
	// domain is the socket's family as the kernel holds it (SO_DOMAIN of cfd); every
	// decision uses it, not the address's sa_family.
	domain int
	addr   []byte // our copy of the caller's address; valid until handle returns
	owned  *bool  // cleared when a worker takes cfd over
}

// forWorker is the part of c a worker may keep after handle returns: what answer needs,
// with its own copy of the address.
func (c call) forWorker() call {
	return call{id: c.id, at: c.at, tid: c.tid, cfd: c.cfd, domain: c.domain, addr: bytes.Clone(c.addr), pidfd: -1}
}

// supervisorErrno maps a failure of the supervisor's own syscalls to the caller's errno.
// EBADF (bad fd), EFAULT and ESRCH (the caller is gone) pass through; running out of
// supervisor resources is reported as EAGAIN, a retryable condition.
func supervisorErrno(err error) unix.Errno {
	var e unix.Errno
	if !errors.As(err, &e) {
		return unix.EAGAIN
	}
	switch e {
	case unix.EMFILE, unix.ENFILE, unix.ENOMEM:
		return unix.EAGAIN
	}
	return e
}

// procPath is /proc/<tid>/<leaf>; cwd and root are per thread.
func procPath(tid int, leaf string) string {
	return "/proc/" + strconv.Itoa(tid) + "/" + leaf
}
