package sandbox

import "fmt"

// syscallGroup denies a list of syscalls with one errno for one reason.
type syscallGroup struct {
	// routine: callers fall back on this errno as a matter of course,
	// so it is no denial worth a log record (see SeccompPlan).
	routine  bool
	errno    string
	why      string
	syscalls []string
}

// denyGroups is the unconditional part of the deny-list (DESIGN.md
// "Seccomp"). ENOSYS is used where callers have a fallback that they
// only take on ENOSYS (glibc for clone3, libuv and Bun for io_uring).
var denyGroups = []syscallGroup{
	{errno: "EPERM", why: "mounts and namespaces", syscalls: []string{
		"mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "open_tree_attr", "mount_setattr",
		"unshare", "setns", "pivot_root", "chroot",
	}},
	{routine: true, errno: "ENOSYS", why: "clone3 flags live in memory seccomp cannot read; glibc falls back to clone", syscalls: []string{"clone3"}},
	{errno: "EPERM", why: "kernel and host changes", syscalls: []string{
		"init_module", "finit_module", "delete_module",
		"kexec_load", "kexec_file_load", "reboot",
		"swapon", "swapoff",
		"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
		"acct", "iopl", "ioperm", "syslog", "vhangup", "quotactl", "quotactl_fd", "uselib",
	}},
	{errno: "EPERM", why: "reaching into other processes", syscalls: []string{
		"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
		"kcmp", "perf_event_open", "bpf", "userfaultfd",
		"keyctl", "add_key", "request_key", "open_by_handle_at",
	}},
	{routine: true, errno: "ENOSYS", why: "io_uring bypasses seccomp and the unix-socket gate", syscalls: []string{
		"io_uring_setup", "io_uring_enter", "io_uring_register",
	}},
}

func errnoRule(name, errno, why string, args ...ArgCond) SyscallRule {
	return SyscallRule{Syscall: name, Action: ActionErrno, Errno: errno, Args: args, Why: why}
}

func eq32(arg uint, v uint64) ArgCond {
	return ArgCond{Arg: arg, Op: OpMaskedEqual, Mask: lower32, Value: v}
}

// buildSeccomp builds the filter. landlockGatesUnix is
// LandlockPlan.gatesUnix: when Landlock does not check unix socket
// connects itself, the supervisor must, and datagram sockets, whose
// sends it cannot see, are denied.
func buildSeccomp(landlockGatesUnix bool, api int, sharedNetwork bool) SeccompPlan {
	s := SeccompPlan{
		DefaultAction: ActionAllow,
		BadArchAction: ActionKillProcess,
		// The log bit (SECCOMP_FILTER_FLAG_LOG) goes on the socket and
		// deny filters only: the kernel audits a call per the filter
		// whose action won, and the routine filter (every gated connect,
		// glibc's clone3 probe before each thread) would otherwise be
		// most of the log (211 of 238 records in one measured run) and
		// eat the kernel's rate limit.
		Log:     api >= 3,
		Rules:   []SyscallRule{},
		Sockets: socketPolicy(landlockGatesUnix),
	}
	for _, g := range denyGroups {
		for _, name := range g.syscalls {
			r := errnoRule(name, g.errno, g.why)
			r.Routine = g.routine
			s.Rules = append(s.Rules, r)
		}
	}
	for _, f := range cloneNewFlags {
		s.Rules = append(s.Rules, errnoRule("clone", "EPERM", "new namespace ("+f.name+")",
			ArgCond{Arg: 0, Op: OpMaskedEqual, Mask: f.flag, Value: f.flag}))
	}
	// CLONE_PARENT makes the new process a child of the caller's parent:
	// for the server (pid 2 of its PID namespace) that is the supervisor,
	// outside the namespace, which reaps only the server. The child's
	// zombie then kept the dying guard in the kernel (it waits for every
	// process of its namespace to be reaped) while the supervisor waited for
	// the guard: `run` hung for good (red-team finding). clone3 answers
	// ENOSYS, vfork and fork have no flags.
	s.Rules = append(s.Rules, errnoRule("clone", "EPERM", "CLONE_PARENT would make the supervisor, outside the PID namespace, the new process's parent",
		ArgCond{Arg: 0, Op: OpMaskedEqual, Mask: cloneParent, Value: cloneParent}))
	// Terminal injection: TIOCSTI pushes input into a terminal that an
	// operator's shell reads; TIOCLINUX can do the same on a console.
	s.Rules = append(s.Rules,
		errnoRule("ioctl", "EPERM", "TIOCSTI injects input into a terminal", eq32(1, tiocsti)),
		errnoRule("ioctl", "EPERM", "TIOCLINUX injects input into a console", eq32(1, tioclinux)),
	)
	// Personality flags that would weaken the target's own memory
	// protections for the programs it execs.
	s.Rules = append(s.Rules,
		// Bit 31 is in no personality, only in the query 0xffffffff,
		// which must keep working.
		errnoRule("personality", "EPERM", "READ_IMPLIES_EXEC makes all mappings executable",
			ArgCond{Arg: 0, Op: OpMaskedEqual, Mask: personalityReadImpliesExec | personalityQueryBit, Value: personalityReadImpliesExec}),
		errnoRule("personality", "EPERM", "ADDR_NO_RANDOMIZE turns off ASLR",
			ArgCond{Arg: 0, Op: OpMaskedEqual, Mask: personalityAddrNoRandomize | personalityQueryBit, Value: personalityAddrNoRandomize}),
	)
	// IP_LOCAL_PORT_RANGE (setsockopt at SOL_IP) narrows the ports the
	// kernel may pick for a bind to port 0, which the sandbox allows, down
	// to one: the instance could take any exact port of the host's
	// ephemeral range, another instance's listen port included (red-team
	// finding). Nothing the server runs needs it.
	s.Rules = append(s.Rules, errnoRule("setsockopt", "EPERM", "IP_LOCAL_PORT_RANGE would let a bind to port 0 pick an exact port",
		eq32(1, solIP), eq32(2, ipLocalPortRange)))
	s.Rules = append(s.Rules, suidRules()...)
	if !landlockGatesUnix {
		s.Rules = append(s.Rules, SyscallRule{
			Syscall: "connect", Action: ActionNotify, Routine: true,
			Why: fmt.Sprintf("unix-socket allow-list: the supervisor checks and connects on the caller's behalf (Landlock ABI < %d)", resolveUnixSince),
		})
		if sharedNetwork {
			s.Rules = append(s.Rules, SyscallRule{
				Syscall: "bind", Action: ActionNotify, Routine: true,
				Why: "host network namespace: the supervisor binds on the caller's behalf, refusing abstract unix names, socket files outside the read-write paths and TCP/UDP ports other than 0, listen.port and allowBindPorts",
			})
		}
	}
	return s
}

// socketPolicy is the allow-list for socket(2) and socketpair(2)
// (DESIGN.md "Deny by default, decided from the kernel's view"): what
// Node, Bun, opencode, git, curl and Python use, nothing else.
//
// Left out on purpose: raw and packet sockets (they forge packets past
// the network policy), ICMP "ping" sockets (not needed by the server;
// ping(8) fails), Multipath TCP (Landlock's TCP bind rule does not
// cover it; EPROTONOSUPPORT is what a kernel without MPTCP says, so Go,
// which listens with MPTCP by default, and curl fall back to TCP),
// netlink protocols other than NETLINK_ROUTE (sock_diag lists other
// instances' sockets; audit, netfilter and uevent are host-wide), and,
// unless Landlock gates unix sockets itself, every AF_UNIX type but
// stream and seqpacket: an unconnected datagram send carries its
// address inside sendmsg's msghdr, which neither seccomp nor the gate
// can read, and the kernel makes a datagram socket of SOCK_RAW too.
func socketPolicy(landlockGatesUnix bool) SocketPolicy {
	unixTypes := []SocketType{
		{Type: sockStream, Name: "SOCK_STREAM", Protocols: []int{0}, Pair: true},
		{Type: sockSeqpacket, Name: "SOCK_SEQPACKET", Protocols: []int{0}, Pair: true},
	}
	unixWhy := fmt.Sprintf("datagram sockets (SOCK_DGRAM, and SOCK_RAW, which the kernel makes one) cannot be gated below Landlock ABI %d", resolveUnixSince)
	if landlockGatesUnix {
		unixTypes = append(unixTypes, SocketType{Type: sockDgram, Name: "SOCK_DGRAM", Protocols: []int{0}, Pair: true})
		unixWhy = "Landlock checks connects and datagram sends (resolve_unix)"
	}
	inetTypes := []SocketType{
		{Type: sockStream, Name: "SOCK_STREAM", Protocols: []int{0, ipprotoTCP}},
		{Type: sockDgram, Name: "SOCK_DGRAM", Protocols: []int{0, ipprotoUDP}},
	}
	inetWhy := "TCP and UDP; raw sockets forge packets, Multipath TCP bypasses Landlock's TCP bind rule"
	return SocketPolicy{
		TypeFlags:     sockNonblock | sockCloexec,
		FamilyErrno:   "EAFNOSUPPORT",
		ProtocolErrno: "EPROTONOSUPPORT",
		Families: []SocketFamily{
			{Family: afUnix, Name: "AF_UNIX", Types: unixTypes, TypeErrno: "EACCES", Why: unixWhy},
			{Family: afInet, Name: "AF_INET", Types: inetTypes, TypeErrno: "EPERM", Why: inetWhy},
			{Family: afInet6, Name: "AF_INET6", Types: inetTypes, TypeErrno: "EPERM", Why: inetWhy},
			{Family: afNetlink, Name: "AF_NETLINK", TypeErrno: "EPERM",
				Types: []SocketType{
					{Type: sockRaw, Name: "SOCK_RAW", Protocols: []int{netlinkRoute}},
					{Type: sockDgram, Name: "SOCK_DGRAM", Protocols: []int{netlinkRoute}},
				},
				Why: "NETLINK_ROUTE only (os.networkInterfaces, net.Interfaces); other protocols show or change host state"},
		},
	}
}

// Set-user-ID and set-group-ID bits (S_ISUID, S_ISGID), O_CREAT and
// __O_TMPFILE (O_TMPFILE without O_DIRECTORY; the x86-64 and arm64 value).
const (
	modeSetUID = 0o4000
	modeSetGID = 0o2000
	oCreat     = 0o100
	oTmpfile   = 0o20000000
)

// suidRules stop the instance from making set-user-ID or set-group-ID files
// (what systemd's RestrictSUIDSGID= does): whoever else ran one in the
// project would run with the instance user's rights. Like systemd, the mode
// is checked in chmod, fchmod, fchmodat(2), mknod(at) and in creating opens
// (O_CREAT, and O_TMPFILE, whose file a link makes visible), and openat2 is
// refused whole: its mode lives in struct open_how, out of seccomp's sight.
// ENOSYS there makes glibc, Node and Bun (which do not call it) or anyone
// probing for it fall back to openat.
func suidRules() []SyscallRule {
	openat2 := errnoRule("openat2", "ENOSYS", "its mode (S_ISUID, S_ISGID) lives in memory seccomp cannot read; callers fall back to openat")
	openat2.Routine = true
	rules := []SyscallRule{openat2}
	for _, bit := range []struct {
		name string
		v    uint64
	}{{"S_ISUID", modeSetUID}, {"S_ISGID", modeSetGID}} {
		why := "no " + bit.name + " files: another user running one would get the instance's rights"
		mode := func(arg uint) ArgCond { return ArgCond{Arg: arg, Op: OpMaskedEqual, Mask: bit.v, Value: bit.v} }
		creat := func(arg uint) ArgCond { return ArgCond{Arg: arg, Op: OpMaskedEqual, Mask: oCreat, Value: oCreat} }
		tmpfile := func(arg uint) ArgCond { return ArgCond{Arg: arg, Op: OpMaskedEqual, Mask: oTmpfile, Value: oTmpfile} }
		rules = append(rules,
			errnoRule("chmod", "EPERM", why, mode(1)),
			errnoRule("fchmod", "EPERM", why, mode(1)),
			errnoRule("fchmodat", "EPERM", why, mode(2)),
			errnoRule("fchmodat2", "EPERM", why, mode(2)),
			errnoRule("creat", "EPERM", why, mode(1)),
			errnoRule("open", "EPERM", why, creat(1), mode(2)),
			errnoRule("openat", "EPERM", why, creat(2), mode(3)),
			errnoRule("open", "EPERM", why, tmpfile(1), mode(2)),
			errnoRule("openat", "EPERM", why, tmpfile(2), mode(3)),
			errnoRule("mknod", "EPERM", why, mode(1)),
			errnoRule("mknodat", "EPERM", why, mode(2)),
		)
	}
	return rules
}
