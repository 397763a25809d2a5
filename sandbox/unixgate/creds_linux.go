package unixgate

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// creds is the part of a task's credentials that decides whether it may reach a socket
// file and what a server's SO_PEERCRED shows.
type creds struct {
	uid, gid uint32 // effective; setresuid/setresgid make the fs ids follow
	groups   []uint32
	capEff   [2]uint32
}

func (c creds) String() string {
	return fmt.Sprintf("uid=%d gid=%d groups=%v capeff=%08x%08x", c.uid, c.gid, c.groups, c.capEff[1], c.capEff[0])
}

// selfCreds reads the supervisor's own credentials, the state every switch returns to.
type selfCreds struct {
	creds
	capPrm, capInh [2]uint32
}

func readSelfCreds() (selfCreds, error) {
	var s selfCreds
	s.uid, s.gid = uint32(unix.Geteuid()), uint32(unix.Getegid())
	gs, err := unix.Getgroups()
	if err != nil {
		return s, fmt.Errorf("read supplementary groups: %w", err)
	}
	for _, g := range gs {
		s.groups = append(s.groups, uint32(g))
	}
	slices.Sort(s.groups)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return s, fmt.Errorf("read capabilities: %w", err)
	}
	for i := range data {
		s.capEff[i], s.capPrm[i], s.capInh[i] = data[i].Effective, data[i].Permitted, data[i].Inheritable
	}
	return s, nil
}

// parseStatus extracts credentials from /proc/<tid>/status. capPrmZero reports a task
// with no permitted capabilities: such a task can never change its groups or gain
// capabilities without an exec that also changes its uids, which lets us cache.
func parseStatus(b []byte) (c creds, capPrmZero bool, err error) {
	seen := 0
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := bytes.Fields(val)
		switch string(key) {
		case "Uid", "Gid":
			if len(f) < 2 {
				return c, false, fmt.Errorf("parse %s line %q", key, line)
			}
			v, err := strconv.ParseUint(string(f[1]), 10, 32)
			if err != nil {
				return c, false, fmt.Errorf("parse %s line %q: %w", key, line, err)
			}
			if key[0] == 'U' {
				c.uid = uint32(v)
			} else {
				c.gid = uint32(v)
			}
			seen++
		case "Groups":
			c.groups = make([]uint32, 0, len(f))
			for _, g := range f {
				v, err := strconv.ParseUint(string(g), 10, 32)
				if err != nil {
					return c, false, fmt.Errorf("parse groups %q: %w", line, err)
				}
				c.groups = append(c.groups, uint32(v))
			}
			seen++
		case "CapEff", "CapPrm":
			if len(f) != 1 {
				return c, false, fmt.Errorf("parse %s line %q", key, line)
			}
			v, err := strconv.ParseUint(string(f[0]), 16, 64)
			if err != nil {
				return c, false, fmt.Errorf("parse %s line %q: %w", key, line, err)
			}
			if string(key) == "CapEff" {
				c.capEff = [2]uint32{uint32(v), uint32(v >> 32)}
			} else {
				capPrmZero = v == 0
			}
			seen++
		}
	}
	if seen != 5 {
		return c, false, fmt.Errorf("parse status: found %d of 5 credential lines", seen)
	}
	slices.Sort(c.groups)
	return c, capPrmZero, nil
}
