package sandbox

import (
	"fmt"
	"strings"
)

// String renders the plan for `opencode-launcher explain`.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sandbox for instance %q (user %s, group %s), host layout %s\n", p.Instance, p.User, p.Group, p.Layout)
	fmt.Fprintf(&b, "TMPDIR=%s\n", p.TmpDir)
	fmt.Fprintf(&b, "\nprotections on this kernel:\n")
	for _, pr := range p.Protections {
		fmt.Fprintf(&b, "  %s\n", pr)
	}
	l := p.Landlock
	fmt.Fprintf(&b, "\nlandlock: kernel ABI %d (minimum %d), audit log of denials after exec: %v\n", l.ABI, l.MinABI, l.LogSubprocesses)
	fmt.Fprintf(&b, "  handled fs:  %v\n  handled net: %v\n  scoped:      %v\n", l.HandledFS, l.HandledNet, l.Scoped)
	for _, r := range l.Paths {
		fmt.Fprintf(&b, "  allow %s\n", r)
	}
	for _, r := range l.Ports {
		fmt.Fprintf(&b, "  allow %s\n", r)
	}
	s := p.Seccomp
	fmt.Fprintf(&b, "\nseccomp: default %s, other architectures %s; three stacked filters, the most restrictive action wins\n", s.DefaultAction, s.BadArchAction)
	var routine, deny []SyscallRule
	for _, r := range s.Rules {
		if r.Routine {
			routine = append(routine, r)
		} else {
			deny = append(deny, r)
		}
	}
	fmt.Fprintf(&b, "  routine filter (never logged: notifications and ENOSYS fallbacks):\n")
	for _, line := range groupRules(routine) {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	sp := s.Sockets
	fmt.Fprintf(&b, "  socket filter (log bit %v): socket() and socketpair() allow only, type flags %#x allowed:\n", s.Log, sp.TypeFlags)
	for _, f := range sp.Families {
		types := make([]string, len(f.Types))
		for i, t := range f.Types {
			types[i] = t.String()
		}
		fmt.Fprintf(&b, "    %s (%d): %s; other types %s — %s\n", f.Name, f.Family, strings.Join(types, ", "), f.TypeErrno, f.Why)
	}
	fmt.Fprintf(&b, "    any other family %s, any other protocol %s\n", sp.FamilyErrno, sp.ProtocolErrno)
	fmt.Fprintf(&b, "  deny filter (log bit %v):\n", s.Log)
	for _, line := range groupRules(deny) {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	g := p.Gate
	fmt.Fprintf(&b, "\nunix socket gate: %s (max pending %d)\n", g.Mode, g.MaxPending)
	for _, a := range g.Allow {
		fmt.Fprintf(&b, "  allow %s\n", a)
	}
	for _, d := range g.OwnDirs {
		fmt.Fprintf(&b, "  own   %s\n", d)
	}
	return b.String()
}

// groupRules renders runs of rules that differ only in one argument's
// value as one line ("a0 & 0xffffffff in {…}"), so explain stays
// readable; the JSON keeps every rule.
func groupRules(rules []SyscallRule) []string {
	var out []string
	for i := 0; i < len(rules); {
		r := rules[i]
		j, diff := i+1, -1
		for ; j < len(rules); j++ {
			d, ok := oneArgDiffers(r, rules[j])
			if !ok || (diff >= 0 && d != diff) {
				break
			}
			diff = d
		}
		if j-i < 3 {
			out = append(out, r.String())
			i++
			continue
		}
		var vals []string
		for _, x := range rules[i:j] {
			vals = append(vals, fmt.Sprintf("%#x", x.Args[diff].Value))
		}
		var conds []string
		for k, c := range r.Args {
			if k == diff {
				set := " in {" + strings.Join(vals, ",") + "}"
				if c.Op == OpMaskedEqual {
					conds = append(conds, fmt.Sprintf("a%d & %#x", c.Arg, c.Mask)+set)
				} else {
					conds = append(conds, fmt.Sprintf("a%d", c.Arg)+set)
				}
				continue
			}
			conds = append(conds, c.String())
		}
		act := r.Action
		if r.Action == ActionErrno {
			act = r.Errno
		}
		out = append(out, fmt.Sprintf("%s(%s) -> %s — %s", r.Syscall, strings.Join(conds, " && "), act, r.Why))
		i = j
	}
	return out
}

// oneArgDiffers reports whether b equals a except for the Value of
// exactly one argument condition, and which.
func oneArgDiffers(a, b SyscallRule) (int, bool) {
	if a.Syscall != b.Syscall || a.Action != b.Action || a.Errno != b.Errno || a.Why != b.Why || len(a.Args) != len(b.Args) {
		return -1, false
	}
	diff := -1
	for k := range a.Args {
		x, y := a.Args[k], b.Args[k]
		if x == y {
			continue
		}
		x.Value = y.Value
		if x != y || diff >= 0 {
			return -1, false
		}
		diff = k
	}
	return diff, diff >= 0
}
