package unixgate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func sunAddr(path string, extra int) []byte {
	b := []byte{unix.AF_UNIX, 0} // little-endian hosts; the test only runs where that holds
	b = append(b, path...)
	return append(b, make([]byte, extra)...)
}

func TestUnixTarget(t *testing.T) {
	type result struct {
		Path     string
		Abstract bool
		Errno    unix.Errno
	}
	tests := []struct {
		name string
		addr []byte
		want result
	}{
		{name: "PathnameWithoutNUL", addr: sunAddr("/run/a.sock", 0), want: result{Path: "/run/a.sock"}},
		{name: "PathnameEndsAtFirstNUL", addr: sunAddr("/run/a.sock\x00junk", 3), want: result{Path: "/run/a.sock"}},
		{name: "RelativePathname", addr: sunAddr("a.sock", 1), want: result{Path: "a.sock"}},
		{name: "AbstractName", addr: sunAddr("\x00hidden", 0), want: result{Path: "@hidden", Abstract: true}},
		{name: "FamilyOnlyIsEINVAL", addr: sunAddr("", 0), want: result{Errno: unix.EINVAL}},
		{name: "TooLongIsEINVAL", addr: sunAddr(string(make([]byte, 109)), 0), want: result{Errno: unix.EINVAL}},
		{name: "MaximumLengthIsFine", addr: sunAddr("/"+string(make([]byte, 107)), 0), want: result{Path: "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, abs, e := unixTarget(tt.addr)
			if diff := cmp.Diff(tt.want, result{Path: p, Abstract: abs, Errno: e}); diff != "" {
				t.Errorf("unixTarget (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tx\nUmask:\t0022\nUid:\t0\t1000\t0\t1000\nGid:\t0\t100\t0\t100\n" +
		"FDSize:\t64\nGroups:\t27 4 100 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n" +
		"CapEff:\t0000000000000000\n"
	c, prmZero, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := creds{uid: 1000, gid: 100, groups: []uint32{4, 27, 100}}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(creds{})); diff != "" {
		t.Errorf("parseStatus (-want +got):\n%s", diff)
	}
	if !prmZero {
		t.Error("parseStatus: CapPrm 0 not reported as zero")
	}

	root := "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
	c, prmZero, err = parseStatus([]byte(root))
	if err != nil {
		t.Fatal(err)
	}
	want = creds{groups: []uint32{}, capEff: [2]uint32{0xffffffff, 0x1ff}}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(creds{})); diff != "" {
		t.Errorf("parseStatus root (-want +got):\n%s", diff)
	}
	if prmZero {
		t.Error("parseStatus: root CapPrm reported as zero")
	}

	if _, _, err := parseStatus([]byte("Uid:\t0\t0\t0\t0\n")); err == nil {
		t.Error("parseStatus accepted a status without Gid, Groups and capabilities")
	}
}
