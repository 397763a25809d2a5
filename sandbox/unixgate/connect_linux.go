package unixgate

import (
	"errors"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitSlice is how long a worker blocks in one connect before it checks that the caller
// still waits, so an abandoned connect frees its thread quickly.
const waitSlice = 100 * time.Millisecond

// rawConnect connects fd to a raw sockaddr and returns the kernel's errno.
func rawConnect(fd int, addr []byte) unix.Errno {
	var p unsafe.Pointer
	if len(addr) > 0 {
		p = unsafe.Pointer(&addr[0])
	}
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), uintptr(len(addr)))
	return e
}

// isBlocking reports whether the caller's open file is in blocking mode.
func isBlocking(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK == 0
}

// connectInet connects an AF_INET, AF_INET6 or AF_UNSPEC address on the caller's behalf.
// No credentials are needed: the socket keeps its creator's network namespace, cgroup and
// owner for netfilter. Blocking stream connects may take minutes, so they go to a worker.
func (s *server) connectInet(c call) {
	if !idValid(s.fd, c.id) {
		return
	}
	if addrFamily(c.addr) != unix.AF_UNSPEC && isBlocking(c.cfd) {
		typ, err := unix.GetsockoptInt(c.cfd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err == nil && typ != unix.SOCK_DGRAM {
			w := c.forWorker()
			*c.owned = false
			if !s.spawn(func() { s.inetWorker(w) }) {
				*c.owned = true
				s.respond(c.id, unix.EAGAIN)
			}
			return
		}
	}
	s.answer(c, rawConnect(c.cfd, c.addr))
}

// inetWorker emulates a blocking connect in slices, honouring the caller's own
// SO_SNDTIMEO (after which the kernel returns EINPROGRESS).
func (s *server) inetWorker(c call) {
	id, cfd, addr := c.id, c.cfd, c.addr
	defer unix.Close(cfd)
	old, _ := unix.GetsockoptTimeval(cfd, unix.SOL_SOCKET, unix.SO_SNDTIMEO)
	var deadline time.Time
	if old != nil && (old.Sec != 0 || old.Usec != 0) {
		deadline = time.Now().Add(time.Duration(old.Nano()))
	}
	errno := unix.Errno(0)
	for first := true; ; first = false {
		slice := waitSlice
		if !deadline.IsZero() {
			slice = min(slice, time.Until(deadline))
			if slice <= 0 {
				errno = unix.EINPROGRESS
				break
			}
		}
		setSndTimeo(cfd, slice)
		errno = rawConnect(cfd, addr)
		if !first && errno == unix.EISCONN {
			errno = 0 // completed between two slices
		}
		// EINPROGRESS: a slice ended; EALREADY: still connecting; EINTR: a signal hit
		// this thread. The kernel would keep waiting in all three.
		if errno != unix.EINPROGRESS && errno != unix.EALREADY && errno != unix.EINTR {
			break
		}
		if !idValid(s.fd, id) {
			restoreSndTimeo(cfd, old)
			return
		}
		if s.ctx.Err() != nil {
			errno = unix.EINTR
			break
		}
	}
	restoreSndTimeo(cfd, old)
	s.answer(c, errno)
}

// connectOther connects any other family with the caller's credentials, so that checks
// in the protocol (netlink groups need CAP_NET_ADMIN) see the caller, not us.
func (s *server) connectOther(c call) error {
	cr, err := s.cache.lookup(c.tid, c.pidfd, 0)
	if err != nil {
		s.respond(c.id, supervisorErrno(err))
		return nil
	}
	if !idValid(s.fd, c.id) {
		return nil
	}
	if err := s.ident.become(cr); err != nil {
		s.respond(c.id, unix.EACCES)
		s.log.Warn("unixgate: connect denied", "instance", s.pol.Instance, "tid", c.tid,
			"reason", "take caller credentials: "+err.Error())
		if errors.Is(err, errTainted) {
			return err
		}
		return nil
	}
	s.answer(c, rawConnect(c.cfd, c.addr))
	return nil
}

func setSndTimeo(fd int, d time.Duration) {
	tv := unix.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
}

func restoreSndTimeo(fd int, old *unix.Timeval) {
	if old == nil {
		old = &unix.Timeval{}
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, old)
}

// procFdAddr is a sockaddr_un for /proc/self/fd/<fd>: connecting there reaches the
// pinned inode, whatever happens to the path meanwhile.
func procFdAddr(fd int) []byte {
	b := make([]byte, 0, sunPathOffset+32)
	var fam [2]byte
	*(*uint16)(unsafe.Pointer(&fam[0])) = unix.AF_UNIX
	b = append(b, fam[:]...)
	b = append(b, "/proc/self/fd/"...)
	b = strconv.AppendInt(b, int64(fd), 10)
	return b
}
