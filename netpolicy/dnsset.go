package netpolicy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// DNSEntry is one element of a DNS set: an answered address and a port its
// name allows, with the name (the element's nft comment) and its lifetime.
type DNSEntry struct {
	Addr    netip.Addr    `json:"addr"`
	Port    uint16        `json:"port"`
	Name    string        `json:"name"`
	Timeout time.Duration `json:"timeout"`
	Expires time.Duration `json:"expires,omitempty"` // read back only: time left
}

func (e DNSEntry) String() string {
	s := fmt.Sprintf("%s . %d timeout %s", e.Addr, e.Port, e.Timeout)
	if e.Expires > 0 {
		s += fmt.Sprintf(" expires %s", e.Expires.Round(time.Second))
	}
	return s + fmt.Sprintf(" (%s)", e.Name)
}

// maxCommentLen keeps element comments well inside the kernel's 256-byte
// user data. A name under a wildcard can be 253 characters, more with
// escapes; the tail is kept, since it is what matches the rule.
const maxCommentLen = 128

func elementComment(name string) string {
	if len(name) <= maxCommentLen {
		return name
	}
	return "~" + name[len(name)-maxCommentLen+1:]
}

// dnsKey encodes the element key of an address . inet_service set: the
// address, then the port in network order padded to 4 bytes, because each
// field of a concatenation occupies whole 32-bit registers.
func dnsKey(a netip.Addr, port uint16) []byte {
	k := a.Unmap().AsSlice()
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

// parseDNSKey is the inverse of dnsKey.
func parseDNSKey(k []byte) (netip.Addr, uint16, bool) {
	switch len(k) {
	case 8, 20:
		a, _ := netip.AddrFromSlice(k[:len(k)-4])
		return a, binary.BigEndian.Uint16(k[len(k)-4:]), true
	}
	return netip.Addr{}, 0, false
}
