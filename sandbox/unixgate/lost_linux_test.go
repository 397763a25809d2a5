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
	var l lostAnswers
	var got []unix.Errno

	got = append(got, l.replay(fds[0], a, unix.EISCONN)) // nothing lost yet
	l.record(fds[0], a, 0)
	got = append(got, l.replay(fds[0], b, unix.EISCONN))      // another address
	got = append(got, l.replay(fds[1], a, unix.EISCONN))      // another socket
	got = append(got, l.replay(fds[0], a, unix.ECONNREFUSED)) // not a repeat
	got = append(got, l.replay(fds[0], a, unix.EISCONN))      // the repeat: success
	got = append(got, l.replay(fds[0], a, unix.EISCONN))      // replayed once only
	l.record(fds[0], a, unix.EINPROGRESS)
	got = append(got, l.replay(fds[0], a, unix.EALREADY))
	l.record(fds[0], a, unix.ECONNREFUSED) // a failure changes nothing; not kept
	got = append(got, l.replay(fds[0], a, unix.EISCONN))

	want := []unix.Errno{
		unix.EISCONN, unix.EISCONN, unix.EISCONN, unix.ECONNREFUSED, 0, unix.EISCONN,
		unix.EINPROGRESS, unix.EISCONN,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
}
