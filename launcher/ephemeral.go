package launcher

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The kernel hands out ports of net.ipv4.ip_local_port_range to every
// bind(2) of port 0, and the sandbox allows port 0 (test servers need
// throwaway ports). An instance can therefore end up with any free port of
// that range: by binding port 0 until it gets the one it wants, or at once
// with IP_LOCAL_PORT_RANGE (which the seccomp policy also refuses). A
// listen port inside the range could be squatted by another instance while
// its own server is down, and its users' credentials collected (a red-team
// finding). Ports outside the range can only be had by asking for them,
// which the sandbox decides.
const ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// readEphemeralRange reads the host's ephemeral port range; [0 0] when it
// cannot be read (no check then).
func readEphemeralRange() [2]int {
	b, err := os.ReadFile(ephemeralRangeFile)
	if err != nil {
		return [2]int{}
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return [2]int{}
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi {
		return [2]int{}
	}
	return [2]int{lo, hi}
}

// ephemeralProblems names each port the instance is given (listen.port,
// sandbox.allowBindPorts) that lies in the host's ephemeral range r.
func ephemeralProblems(s *Spec, r [2]int) []string {
	if r[0] == 0 {
		return nil
	}
	in := func(p int) bool { return p >= r[0] && p <= r[1] }
	why := fmt.Sprintf("is in this host's ephemeral port range %d–%d (%s), which the kernel hands to any program binding port 0, another instance included: it could take the port while this server is down; choose a port below %d", r[0], r[1], ephemeralRangeFile, r[0])
	var out []string
	if in(s.Listen.Port) {
		out = append(out, fmt.Sprintf("listen.port %d %s", s.Listen.Port, why))
	}
	for i, p := range s.Sandbox.AllowBindPorts {
		if in(p) {
			out = append(out, fmt.Sprintf("sandbox.allowBindPorts[%d] %d %s", i, p, why))
		}
	}
	return out
}

// refuseEphemeral is setup's and run's check: a port in the ephemeral range
// is refused (exit 65), not only warned about as explain does.
func refuseEphemeral(s *Spec, h Host) error {
	if ps := ephemeralProblems(s, h.EphemeralPorts); len(ps) > 0 {
		return withCode(ExitSpecInvalid, fmt.Errorf("instance %q: %s", s.Name, strings.Join(ps, "; ")))
	}
	return nil
}
