package unixgate

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notifReq mirrors struct seccomp_notif. x/sys/unix has the ioctl numbers but not the
// structs; the ioctl numbers encode these sizes (0x50 and 0x18), so a mismatch fails loudly.
type notifReq struct {
	ID    uint64
	Pid   uint32 // a thread id, not a process id
	Flags uint32
	Data  seccompData
}

// seccompData mirrors struct seccomp_data.
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// notifResp mirrors struct seccomp_notif_resp.
type notifResp struct {
	ID    uint64
	Val   int64
	Error int32 // -errno, or 0 for success
	Flags uint32
}

func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

// recvNotif receives one notification. The kernel insists on a zeroed buffer.
func recvNotif(fd int, req *notifReq) error {
	*req = notifReq{}
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(req))
}

// sendResp answers a notification with errno (0 for success). Never with CONTINUE: the
// kernel would then re-read the caller's memory after our check.
func sendResp(fd int, id uint64, errno unix.Errno) error {
	resp := notifResp{ID: id, Error: -int32(errno)}
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp))
}

// idValid reports whether notification id is still pending: the thread that made it is
// still blocked in that very syscall, so its tid, memory and fds are still its own.
func idValid(fd int, id uint64) bool {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

// setSyncWakeUp asks the kernel to wake the supervisor and the caller on the current CPU,
// which halves the round trip when the handler answers inline (Linux 6.6+).
func setSyncWakeUp(fd int) error {
	flags := uint64(unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, uintptr(flags))
	if e != 0 {
		return e
	}
	return nil
}

// nativeAuditArch is the AUDIT_ARCH of this binary; notifications from another ABI
// (compat, x32) would carry arguments laid out differently, so they are refused.
func nativeAuditArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	case "riscv64":
		return unix.AUDIT_ARCH_RISCV64
	case "ppc64le":
		return unix.AUDIT_ARCH_PPC64LE
	case "s390x":
		return unix.AUDIT_ARCH_S390X
	}
	return 0
}
