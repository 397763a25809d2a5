package sandbox

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The socket allow-list is its own small classic-BPF filter, assembled
// here rather than by libseccomp: libseccomp cannot express an
// allow-list inside a default-allow filter (a rule whose action equals
// the default is rejected, and ERRNO outranks ALLOW), so it would take
// the exact complement of the list, hundreds of masked-equal rules that
// must be proven total. A program that compares and falls through to
// a deny is total by construction. See the package doc, "Seccomp".

// Offsets into struct seccomp_data.
const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16
)

// Return values (SECCOMP_RET_*).
const (
	seccompRetAllow = 0x7fff0000
	seccompRetErrno = 0x00050000
)

// auditArch is AUDIT_ARCH_* of the architectures ocnix builds for.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return 0xc000003e, nil
	case "arm64":
		return 0xc00000b7, nil
	case "riscv64":
		return 0xc00000f3, nil
	}
	return 0, fmt.Errorf("sandbox: seccomp: socket filter: architecture %s is not supported", runtime.GOARCH)
}

// bpfProg assembles a classic BPF program with forward jumps to labels.
type bpfProg struct {
	ins    []unix.SockFilter
	labels map[string]int
	fixups []bpfFixup
}

type bpfFixup struct {
	at     int
	jt, jf string // "" is the next instruction
}

func (p *bpfProg) label(name string) { p.labels[name] = len(p.ins) }

func (p *bpfProg) stmt(code uint16, k uint32) {
	p.ins = append(p.ins, unix.SockFilter{Code: code, K: k})
}

// jeq jumps to jt when A == k, else to jf ("" = fall through).
func (p *bpfProg) jeq(k uint32, jt, jf string) {
	p.fixups = append(p.fixups, bpfFixup{at: len(p.ins), jt: jt, jf: jf})
	p.stmt(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k)
}

func (p *bpfProg) load(off uint32) { p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }

func (p *bpfProg) ret(v uint32) { p.stmt(unix.BPF_RET|unix.BPF_K, v) }

func (p *bpfProg) assemble() ([]byte, error) {
	for _, f := range p.fixups {
		for _, j := range []struct {
			name string
			dst  *uint8
		}{{f.jt, &p.ins[f.at].Jt}, {f.jf, &p.ins[f.at].Jf}} {
			if j.name == "" {
				continue
			}
			to, ok := p.labels[j.name]
			if !ok || to <= f.at || to-f.at-1 > 0xff {
				return nil, bug(fmt.Errorf("seccomp: socket filter: jump from %d to %q (%d)", f.at, j.name, to))
			}
			*j.dst = uint8(to - f.at - 1)
		}
	}
	size := int(unsafe.Sizeof(unix.SockFilter{}))
	out := make([]byte, len(p.ins)*size)
	for i, in := range p.ins {
		copy(out[i*size:], unsafe.Slice((*byte)(unsafe.Pointer(&in)), size))
	}
	return out, nil
}

// argLow is the offset of the low 32 bits of syscall argument i: the
// kernel reads family, type and protocol as int.
func argLow(i uint32) uint32 {
	off := seccompDataArgs + 8*i
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big endian
		off += 4
	}
	return off
}

// assembleSocketFilter turns the allow-list into a filter. Other
// architectures' syscalls pass here; the deny filter kills them.
func assembleSocketFilter(sp SocketPolicy) (compiledFilter, error) {
	arch, err := auditArch()
	if err != nil {
		return compiledFilter{}, err
	}
	famErr, err := errnoNumber(sp.FamilyErrno)
	if err != nil {
		return compiledFilter{}, err
	}
	protoErr, err := errnoNumber(sp.ProtocolErrno)
	if err != nil {
		return compiledFilter{}, err
	}
	p := &bpfProg{labels: map[string]int{}}
	p.load(seccompDataArch)
	p.jeq(arch, "", "allow")
	p.load(seccompDataNr)
	p.jeq(uint32(unix.SYS_SOCKET), "socket", "")
	p.jeq(uint32(unix.SYS_SOCKETPAIR), "socketpair", "")
	p.ret(seccompRetAllow)
	for _, call := range []struct {
		name string
		pair bool
	}{{"socket", false}, {"socketpair", true}} {
		p.label(call.name)
		p.load(argLow(0))
		var fams []SocketFamily
		for _, f := range sp.Families {
			var types []SocketType
			for _, t := range f.Types {
				if t.Pair || !call.pair {
					types = append(types, t)
				}
			}
			if len(types) > 0 {
				f.Types = types
				fams = append(fams, f)
			}
		}
		for i, f := range fams {
			p.jeq(uint32(f.Family), fmt.Sprintf("%s/%d", call.name, i), "")
		}
		p.ret(seccompRetErrno | uint32(famErr))
		for i, f := range fams {
			typeErr, err := errnoNumber(f.TypeErrno)
			if err != nil {
				return compiledFilter{}, err
			}
			p.label(fmt.Sprintf("%s/%d", call.name, i))
			p.load(argLow(1))
			// Unknown flag bits stay set and match no listed type.
			p.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, ^sp.TypeFlags)
			for j, t := range f.Types {
				p.jeq(uint32(t.Type), fmt.Sprintf("%s/%d/%d", call.name, i, j), "")
			}
			p.ret(seccompRetErrno | uint32(typeErr))
			for j, t := range f.Types {
				p.label(fmt.Sprintf("%s/%d/%d", call.name, i, j))
				p.load(argLow(2))
				for _, proto := range t.Protocols {
					p.jeq(uint32(proto), "allow", "")
				}
				p.ret(seccompRetErrno | uint32(protoErr))
			}
		}
	}
	p.label("allow")
	p.ret(seccompRetAllow)
	prog, err := p.assemble()
	if err != nil {
		return compiledFilter{}, err
	}
	return compiledFilter{BPF: prog}, nil
}
