package sandbox

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	seccomp "github.com/seccomp/libseccomp-golang"

	"github.com/ocnix/ocnix/internal/pidinit"
)

// DetectCaps reads the kernel's Landlock ABI, libseccomp's API level
// and the host layout. It has no side effects and needs no privileges.
func DetectCaps() Caps {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil {
		abi = 0 // ENOSYS or EOPNOTSUPP: no Landlock at all.
	}
	api, err := seccomp.GetAPI()
	if err != nil {
		api = 0
	}
	fsys := os.DirFS("/").(fs.StatFS)
	return Caps{
		LandlockABI: abi,
		SeccompAPI:  int(api),
		Layout:      detectLayout(fsys),
		PtraceScope: readPtraceScope(),
		Root:        os.Geteuid() == 0,
		FS:          fsys,

		OwnPIDNamespace: pidinit.InOwnNamespace(),
	}
}

// readPtraceScope reads kernel.yama.ptrace_scope; NoYama without Yama. An
// unreadable value counts as 3 so that the plan fails closed.
func readPtraceScope() int {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if errors.Is(err, fs.ErrNotExist) {
		return NoYama
	}
	if err != nil {
		return 3
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 3
	}
	return n
}
