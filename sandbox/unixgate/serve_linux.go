package unixgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Serve handles notifications on notifFD (a seccomp listener fd received from the child)
// until ctx is done or the listener reports the filter is gone. It never answers CONTINUE.
//
// It returns nil when every task using the filter has gone, ctx.Err() when ctx ends, and
// an error if the listener fails. Before it returns, every worker it started has answered
// or abandoned its connect, so the caller may close notifFD afterwards (Serve does not
// close it).
func Serve(ctx context.Context, notifFD int, pol Policy, log *slog.Logger) error {
	if err := pol.Validate(); err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self, err := readSelfCreds()
	if err != nil {
		return fmt.Errorf("unixgate: %w", err)
	}
	arch := nativeAuditArch()
	if arch == 0 {
		return fmt.Errorf("unixgate: architecture %s: %w", runtime.GOARCH, errors.ErrUnsupported)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	canon := pol.Canonical()
	s := &server{
		fd:      notifFD,
		pol:     canon,
		allowed: newAllowInodes(canon),
		log:     log,
		self:    self,
		arch:    arch,
		ctx:     ctx,
		slots:   make(chan struct{}, pol.maxPending()),
		denyLog: newLogLimiter(denyLogRate, denyLogBurst, time.Now),
	}
	defer s.roots.closeAll() // after the loop: Serve waits for it below
	if s.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("unixgate: create eventfd: %w", err)
	}
	// wake is closed only once kick can no longer write to it: a late write could hit a
	// reused fd number.
	defer func() {
		s.kickMu.Lock()
		s.kickClosed = true
		s.kickMu.Unlock()
		unix.Close(s.wake)
	}()
	if err := setSyncWakeUp(notifFD); err != nil {
		// Linux < 6.6: correct, only slower.
		log.Debug("unixgate: synchronous wake-up unavailable", "instance", pol.Instance, "err", err)
	}
	stop := context.AfterFunc(ctx, s.kick)
	defer stop()

	// The loop acts as its callers on its own locked thread (see threadIdentity), never on
	// the caller's thread, which may be locked into a netns. A thread whose switch failed
	// half-way is retired (its goroutine ends locked) and replaced.
	for {
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			s.ident = newThreadIdentity(&s.self)
			err := s.loop()
			if errors.Is(err, errTainted) {
				done <- err
				return
			}
			if rerr := s.ident.restore(); rerr != nil {
				done <- errors.Join(err, rerr)
				return
			}
			runtime.UnlockOSThread()
			done <- err
		}()
		err = <-done
		if !errors.Is(err, errTainted) || s.ctx.Err() != nil {
			break
		}
		log.Warn("unixgate: replacing a thread after a failed credential switch", "instance", pol.Instance, "err", err)
	}
	cancel()
	s.workers.Wait()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("unixgate: %w", err)
	}
	return err
}

// server is the state of one Serve call.
type server struct {
	fd         int
	pol        Policy
	log        *slog.Logger
	self       selfCreds
	arch       uint32
	ctx        context.Context
	wake       int // eventfd: ctx ended
	kickMu     sync.Mutex
	kickClosed bool // wake is closed
	slots      chan struct{}
	workers    sync.WaitGroup
	cache      credCache       // loop goroutine only
	allowed    allowInodes     // loop goroutine only
	roots      rootCache       // loop goroutine only
	ident      *threadIdentity // the loop thread's
	lost       lostAnswers
	lostBind   lostAnswers
	denyLog    *logLimiter
	buf        [maxAddrLen]byte
}

// kick wakes the loop out of poll.
func (s *server) kick() {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	if !s.kickClosed {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		_, _ = unix.Write(s.wake, one)
	}
}

// loop polls rather than blocking in SECCOMP_IOCTL_NOTIF_RECV: the ioctl restarts after
// signals, so nothing but the filter's death could end a blocking receive.
func (s *server) loop() error {
	fds := []unix.PollFd{
		{Fd: int32(s.fd), Events: unix.POLLIN},
		{Fd: int32(s.wake), Events: unix.POLLIN},
	}
	req := new(notifReq)
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("poll seccomp listener: %w", err)
		}
		if fds[1].Revents != 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		ev := fds[0].Revents
		switch {
		case ev&unix.POLLIN != 0:
			err := recvNotif(s.fd, req)
			switch err {
			case nil:
				if err := s.handle(req); err != nil {
					return err
				}
			case unix.ENOENT, unix.EINTR:
				// The caller was killed or interrupted before we got the notification.
			default:
				return fmt.Errorf("receive seccomp notification: %w", err)
			}
		case ev&unix.POLLNVAL != 0:
			return fmt.Errorf("poll seccomp listener: fd %d is not open", s.fd)
		case ev&(unix.POLLHUP|unix.POLLERR) != 0:
			// No task uses the filter any more.
			return nil
		}
	}
}

// respond answers a notification. ENOENT means the caller was killed or interrupted
// meanwhile; then nobody waits for the answer.
func (s *server) respond(id uint64, errno unix.Errno) {
	if err := sendResp(s.fd, id, errno); err != nil && err != unix.ENOENT {
		s.log.Debug("unixgate: answer notification", "instance", s.pol.Instance, "err", err)
	}
}

// answer responds to the on-behalf connect c. See
// lostAnswers for why it may replay an earlier answer.
func (s *server) answer(c call, errno unix.Errno) {
	if again := s.lost.replay(c.at, c.cfd, c.addr, errno); again != errno {
		s.log.Debug("unixgate: restarted connect gets its first answer", "instance", s.pol.Instance,
			"tid", c.tid, "kernel", errno.Error(), "answer", again)
		errno = again
	}
	// Kept before the answer goes out: the restarted call may arrive at once.
	s.lost.record(c.at, c.cfd, c.addr, errno)
	if err := sendResp(s.fd, c.id, errno); err != nil && err != unix.ENOENT {
		s.log.Debug("unixgate: answer notification", "instance", s.pol.Instance, "err", err)
	}
}

// spawn runs fn in a worker if a pending slot is free.
func (s *server) spawn(fn func()) bool {
	select {
	case s.slots <- struct{}{}:
	default:
		return false
	}
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		defer func() { <-s.slots }()
		fn()
	}()
	return true
}
