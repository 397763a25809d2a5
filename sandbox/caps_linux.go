package sandbox

import (
	"io/fs"
	"os"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	seccomp "github.com/seccomp/libseccomp-golang"
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
		FS:          fsys,
	}
}
