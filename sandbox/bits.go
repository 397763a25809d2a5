package sandbox

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
)

// Bit names follow go-landlock's spelling (and thus the kernel's
// LANDLOCK_ACCESS_FS_* suffixes), so explain output matches the
// kernel documentation a reader will look up.
var (
	fsRightNames = []string{
		"execute", "write_file", "read_file", "read_dir", "remove_dir",
		"remove_file", "make_char", "make_dir", "make_reg", "make_sock",
		"make_fifo", "make_block", "make_sym", "refer", "truncate",
		"ioctl_dev", "resolve_unix",
	}
	netRightNames = []string{"bind_tcp", "connect_tcp", "bind_udp", "connect_send_udp"}
	scopeNames    = []string{"abstract_unix_socket", "signal"}
)

// FSRights is a set of Landlock filesystem access rights
// (LANDLOCK_ACCESS_FS_*). It marshals to JSON as a list of names.
type FSRights uint64

// NetRights is a set of Landlock network access rights.
type NetRights uint64

// Scopes is a set of Landlock IPC scopes.
type Scopes uint64

func (r FSRights) String() string  { return landlock.AccessFSSet(r).String() }
func (r NetRights) String() string { return landlock.AccessNetSet(r).String() }
func (s Scopes) String() string    { return landlock.ScopedSet(s).String() }

func (r FSRights) MarshalJSON() ([]byte, error)  { return marshalBits(uint64(r), fsRightNames) }
func (r NetRights) MarshalJSON() ([]byte, error) { return marshalBits(uint64(r), netRightNames) }
func (s Scopes) MarshalJSON() ([]byte, error)    { return marshalBits(uint64(s), scopeNames) }

func (r *FSRights) UnmarshalJSON(b []byte) error {
	v, err := unmarshalBits(b, fsRightNames)
	*r = FSRights(v)
	return err
}

func (r *NetRights) UnmarshalJSON(b []byte) error {
	v, err := unmarshalBits(b, netRightNames)
	*r = NetRights(v)
	return err
}

func (s *Scopes) UnmarshalJSON(b []byte) error {
	v, err := unmarshalBits(b, scopeNames)
	*s = Scopes(v)
	return err
}

func marshalBits(v uint64, names []string) ([]byte, error) {
	out := []string{}
	for i, n := range names {
		if v&(1<<i) != 0 {
			out = append(out, n)
			v &^= 1 << i
		}
	}
	if v != 0 {
		// A bit without a name would be dropped on the way to the
		// child, silently changing the policy.
		return nil, bug(fmt.Errorf("marshal access bits: unknown bits %#x", v))
	}
	return json.Marshal(out)
}

func unmarshalBits(b []byte, names []string) (uint64, error) {
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return 0, err
	}
	var v uint64
	for _, s := range list {
		i := indexOf(names, s)
		if i < 0 {
			return 0, fmt.Errorf("unmarshal access bits: unknown right %q (one of %s)", s, strings.Join(names, ", "))
		}
		v |= 1 << i
	}
	return v, nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// bug marks an error that means ocnix itself is wrong, not the input
// or the host.
func bug(err error) error {
	return fmt.Errorf("sandbox: BUG (please report): %w", err)
}
