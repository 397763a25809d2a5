package sandbox

// Linux ABI numbers used in the seccomp plan. They are spelled out here
// instead of taken from x/sys/unix so that Build stays pure and gives
// the same plan when explain runs on another OS.
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16
	afPacket  = 17
	// afMax is one past the highest family Linux knows (46 in 6.x).
	// Families at or above it are denied too, so a family added by a
	// later kernel is not silently allowed.
	afMax = 46

	sockDgram    = 2
	sockRaw      = 3
	sockPacket   = 10
	sockTypeMask = 0xf // strips SOCK_NONBLOCK and SOCK_CLOEXEC

	ipprotoMPTCP = 262

	tiocsti   = 0x5412
	tioclinux = 0x541c

	personalityReadImpliesExec = 0x0400000
	personalityAddrNoRandomize = 0x0040000
	personalityQueryBit        = 0x80000000

	// int arguments are compared on their low 32 bits, as the kernel
	// reads them; otherwise setting high bits would dodge the rule.
	lower32 = 0xffffffff
)

// cloneNewFlags are the CLONE_NEW* flags that clone(2) accepts in its
// flags argument (CLONE_NEWTIME only works with clone3 and unshare).
var cloneNewFlags = []struct {
	name string
	flag uint64
}{
	{name: "CLONE_NEWNS", flag: 0x00020000},
	{name: "CLONE_NEWCGROUP", flag: 0x02000000},
	{name: "CLONE_NEWUTS", flag: 0x04000000},
	{name: "CLONE_NEWIPC", flag: 0x08000000},
	{name: "CLONE_NEWUSER", flag: 0x10000000},
	{name: "CLONE_NEWPID", flag: 0x20000000},
	{name: "CLONE_NEWNET", flag: 0x40000000},
}
