package sandbox

// Linux ABI numbers used in the seccomp plan. They are spelled out here
// instead of taken from x/sys/unix so that Build stays pure and gives
// the same plan when explain runs on another OS.
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16

	sockStream    = 1
	sockDgram     = 2
	sockRaw       = 3
	sockSeqpacket = 5
	sockNonblock  = 0x800
	sockCloexec   = 0x80000

	ipprotoTCP   = 6
	ipprotoUDP   = 17
	netlinkRoute = 0

	solIP            = 0  // SOL_IP, setsockopt's level
	ipLocalPortRange = 51 // IP_LOCAL_PORT_RANGE (Linux 6.3)

	tiocsti   = 0x5412
	tioclinux = 0x541c

	personalityReadImpliesExec = 0x0400000
	personalityAddrNoRandomize = 0x0040000
	personalityQueryBit        = 0x80000000

	// int arguments are compared on their low 32 bits, as the kernel
	// reads them; otherwise setting high bits would dodge the rule.
	lower32 = 0xffffffff
)

// cloneParent is CLONE_PARENT.
const cloneParent = 0x00008000

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
