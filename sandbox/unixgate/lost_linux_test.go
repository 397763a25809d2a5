package unixgate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestLostAnswersReplay(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	a, b := []byte("address-a"), []byte("address-b")
	at := site{tid: 7, ip: 0x401000, args: [3]uint64{3, 0x7fff0000, 9}}
	otherIP, otherTid := at, at
	otherIP.ip++
	otherTid.tid++
	var l lostAnswers
	var got []unix.Errno

	got = append(got, l.replay(at, fds[0], a, unix.EISCONN)) // nothing kept yet
	l.record(at, fds[0], a, 0)
	got = append(got, l.replay(at, fds[0], b, unix.EISCONN))       // another address
	got = append(got, l.replay(at, fds[1], a, unix.EISCONN))       // another socket
	got = append(got, l.replay(otherIP, fds[0], a, unix.EISCONN))  // another instruction
	got = append(got, l.replay(otherTid, fds[0], a, unix.EISCONN)) // another thread
	got = append(got, l.replay(at, fds[0], a, unix.ECONNREFUSED))  // not a repeat
	got = append(got, l.replay(at, fds[0], a, unix.EISCONN))       // the restart: success
	got = append(got, l.replay(at, fds[0], a, unix.EISCONN))       // replayed once only
	l.record(at, fds[0], a, unix.EINPROGRESS)
	got = append(got, l.replay(at, fds[0], a, unix.EALREADY))
	l.record(at, fds[0], a, 0)
	l.record(at, fds[0], a, unix.ECONNREFUSED) // a failure forgets the thread's last answer
	got = append(got, l.replay(at, fds[0], a, unix.EISCONN))
	l.record(at, fds[0], a, 0)
	got = append(got, l.replayBind(at, fds[0], a, unix.EINVAL)) // bind: already bound
	l.record(at, fds[0], a, 0)
	got = append(got, l.replayBind(at, fds[0], a, unix.EADDRINUSE)) // unix: the file is there
	l.record(at, fds[0], a, unix.EINPROGRESS)
	got = append(got, l.replayBind(at, fds[0], a, unix.EINVAL)) // only a success replays

	want := []unix.Errno{
		unix.EISCONN, unix.EISCONN, unix.EISCONN, unix.EISCONN, unix.EISCONN, unix.ECONNREFUSED,
		0, unix.EISCONN, unix.EINPROGRESS, unix.EISCONN, 0, 0, unix.EINVAL,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
}

// TestLostAnswersStayBounded: one entry per caller thread, and never more than
// maxLostAnswers however many threads connect.
func TestLostAnswersStayBounded(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var l lostAnswers
	for tid := range 3 * maxLostAnswers {
		l.record(site{tid: tid}, fds[0], []byte("a"), 0)
		l.record(site{tid: tid}, fds[0], []byte("a"), 0)
		if len(l.m) > maxLostAnswers {
			t.Fatalf("%d entries after %d threads, want at most %d", len(l.m), tid+1, maxLostAnswers)
		}
	}
	last := site{tid: 3*maxLostAnswers - 1}
	if got := l.replay(last, fds[0], []byte("a"), unix.EISCONN); got != 0 {
		t.Errorf("the newest thread's answer was lost to the bound: %v", got)
	}
}
