package threadcred

import (
	"fmt"
	"math"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Setgroups sets the supplementary groups of the calling thread to gids.
func Setgroups(gids []int) error {
	raw := make([]uint32, len(gids))
	for i, g := range gids {
		if !validID(g) {
			return fmt.Errorf("setgroups %v: group id %d out of range: %w", gids, g, unix.EINVAL)
		}
		raw[i] = uint32(g)
	}
	var p unsafe.Pointer
	if len(raw) > 0 {
		p = unsafe.Pointer(&raw[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(raw)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", gids, e)
	}
	return nil
}

// Setresuid sets the real, effective and saved user ids of the calling
// thread; Keep leaves one unchanged. The filesystem uid follows the
// effective one.
func Setresuid(r, e, s int) error {
	return setres(unix.SYS_SETRESUID, "setresuid", r, e, s)
}

// Setresgid is Setresuid for the group ids.
func Setresgid(r, e, s int) error {
	return setres(unix.SYS_SETRESGID, "setresgid", r, e, s)
}

func setres(nr uintptr, name string, r, e, s int) error {
	var args [3]uintptr
	for i, id := range [3]int{r, e, s} {
		switch {
		case id == Keep:
			// (uid_t)-1 as the kernel reads it: the 32-bit all-ones value.
			args[i] = math.MaxUint32
		case validID(id):
			args[i] = uintptr(id)
		default:
			return fmt.Errorf("%s %d/%d/%d: id %d out of range: %w", name, r, e, s, id, unix.EINVAL)
		}
	}
	if _, _, errno := unix.RawSyscall(nr, args[0], args[1], args[2]); errno != 0 {
		return fmt.Errorf("%s %d/%d/%d: %w", name, r, e, s, errno)
	}
	return nil
}

// validID: ids are 32-bit and the all-ones value means "unchanged".
func validID(id int) bool {
	return id >= 0 && id < math.MaxUint32
}
