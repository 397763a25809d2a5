package unixgate

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// maxAddrLen is sizeof(struct sockaddr_storage): the kernel refuses longer addresses
// with EINVAL before it looks at them.
const maxAddrLen = unix.SizeofSockaddrAny

// sunPathOffset is offsetof(struct sockaddr_un, sun_path).
const sunPathOffset = 2

// addrFamily returns the family of a copied sockaddr, or AF_UNSPEC when it is too short
// to have one (the kernel then decides the errno itself).
func addrFamily(addr []byte) uint16 {
	if len(addr) < 2 {
		return unix.AF_UNSPEC
	}
	// sa_family is in host byte order.
	return *(*uint16)(unsafePointer(addr))
}

// unixTarget classifies an AF_UNIX address the way unix_validate_addr and unix_mkname_bsd
// do: too short or too long is EINVAL, a leading NUL is abstract (path is then "@" and
// the name, for the log), and a pathname ends at the first NUL or at the address length.
func unixTarget(addr []byte) (path string, abstract bool, errno unix.Errno) {
	if len(addr) <= sunPathOffset || len(addr) > unix.SizeofSockaddrUnix {
		return "", false, unix.EINVAL
	}
	sun := addr[sunPathOffset:]
	if sun[0] == 0 {
		return "@" + string(sun[1:]), true, 0
	}
	if i := bytes.IndexByte(sun, 0); i >= 0 {
		sun = sun[:i]
	}
	return string(sun), false, 0
}
