package netpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/ocnix/ocnix/internal/atomicfile"
	"github.com/vishvananda/netlink"
)

// ListenersFile records the registered listeners (the peer guard's
// elements), one entry per instance. It is the source of truth the shared
// table is rebuilt from under the /run/ocnix lock, so two setups at once,
// a crash half-way and a host `nft flush ruleset` all converge on the
// next setup or teardown of any instance. It is on tmpfs like the table.
const ListenersFile = ForwardStateDir + "/listeners.json"

type listenersState struct {
	Listeners []Listener `json:"listeners"`
}

func readListeners() ([]Listener, error) {
	var st listenersState
	b, err := os.ReadFile(ListenersFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ListenersFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): remove it and run setup of every instance again", ListenersFile, err)
	}
	return sortListeners(st.Listeners), nil
}

// writeListeners replaces the record atomically, or removes it when no
// listener is left.
func writeListeners(ls []Listener) error {
	if len(ls) == 0 {
		if err := os.Remove(ListenersFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", ListenersFile, err)
		}
		return nil
	}
	b, err := json.Marshal(listenersState{Listeners: sortListeners(ls)})
	if err != nil {
		return bug(err)
	}
	return atomicfile.WriteFile(ListenersFile, append(b, '\n'), 0o644)
}

// withListener returns ls with instance's entry replaced by l, or removed
// when l is nil.
func withListener(ls []Listener, instance string, l *Listener) []Listener {
	out := slices.DeleteFunc(slices.Clone(ls), func(x Listener) bool { return x.Instance == instance })
	if l != nil {
		out = append(out, *l)
	}
	return sortListeners(out)
}

// updateListeners applies this instance's registration to the record
// (caller holds the lock) and returns the new list.
func updateListeners(instance string, l *Listener) ([]Listener, error) {
	ls, err := readListeners()
	if err != nil {
		return nil, err
	}
	next := withListener(ls, instance, l)
	if !slices.Equal(next, ls) || (len(next) > 0 && !fileExists(ListenersFile)) {
		if err := writeListeners(next); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// EnsureShared converges a plan with isolation off: whatever an earlier
// isolated setup left (host table, veth, netns, resolv.conf) is removed,
// and the instance's listener is registered in the shared host table, so
// that no other instance reaches its server and it reaches no other's. It
// needs root and is idempotent.
func EnsureShared(p Plan) error {
	if p.Enable {
		return fmt.Errorf("netpolicy: ensure shared %s: %w", p.Instance, bug(errors.New("plan has isolation on; use Ensure")))
	}
	return teardown(p, p.Listener)
}

// syncShared rebuilds the shared table from the records after this
// instance's registration became l (nil: none), under the lock. When no
// instance veth is left on the host, it also releases the forwarding
// sysctls setup turned on (see releaseForwarding); when moreover no
// listener is left, the table and the records go.
func syncShared(instance string, l *Listener) error {
	unlock, err := lockForward()
	if err != nil {
		return err
	}
	defer unlock()
	ls, err := updateListeners(instance, l)
	if err != nil {
		return fmt.Errorf("peer guard: %w", err)
	}
	vethsLeft, err := instanceVethsLeft()
	if err != nil {
		return err
	}
	st, err := readForwardState()
	if err != nil {
		return err
	}
	if !vethsLeft {
		if err := restoreForwarding(st); err != nil {
			// Keep the drop rules: they still guard what is on.
			if aerr := applyTable(SharedTable(st.Enabled, ls), -1); aerr != nil {
				err = errors.Join(err, fmt.Errorf("shared table: %w", aerr))
			}
			return err
		}
		st.Enabled = nil
		if err := os.Remove(ForwardStateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", ForwardStateFile, err)
		}
		if len(ls) == 0 {
			if err := deleteTable(SharedTable(nil, nil), -1); err != nil {
				return fmt.Errorf("shared table: %w", err)
			}
			return nil
		}
	}
	if err := applyTable(SharedTable(st.Enabled, ls), -1); err != nil {
		return fmt.Errorf("shared table: %w", err)
	}
	return nil
}

func instanceVethsLeft() (bool, error) {
	links, err := dump(netlink.LinkList)
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Alias, aliasPrefix) {
			return true, nil
		}
	}
	return false, nil
}

// VerifyPeerGuard checks that the shared host table holds the peer guard
// and this instance's listener (port . uid), as setup left it. A host
// `nft flush ruleset` (or a teardown of the last other instance that
// failed half-way) makes it fail until setup runs again. It changes
// nothing and needs CAP_NET_ADMIN. A plan without a listener verifies
// trivially.
//
// It reads under the lock every setup and teardown holds while it rewrites
// the shared table: the check is several netlink dumps (chains, rules, the
// set and its elements), and other instances' setups, which a boot or a
// rebuild starts at the same time, replace the table in between. A
// preflight once refused a server whose setup had just succeeded (the
// systemd tier's six instances; restarted 4 s later), most likely so.
func VerifyPeerGuard(p Plan) error {
	if p.Listener == nil {
		return nil
	}
	unlock, err := lockForward()
	if err != nil {
		return fmt.Errorf("netpolicy: peer guard of %s: %w", p.Instance, err)
	}
	defer unlock()
	if err := verifyPeerGuard(*p.Listener, hostNetnsFor(p)); err != nil {
		return fmt.Errorf("netpolicy: peer guard of %s: %w; run setup again", p.Instance, err)
	}
	return nil
}

// hostNetnsFor is where the peer guard of p lives, seen from the caller:
// "" for the caller's own network namespace, or the path of the host's.
// Under systemd the caller may be in the instance's namespace, since
// ExecStartPre=+ escapes User= and the mount sandbox but still joins
// NetworkNamespacePath=; the host's is then init's (systemd, or a
// container's init). Only then is /proc/1 asked: elsewhere PID 1 need not
// be readable (a VM's or sandbox's own init).
func hostNetnsFor(p Plan) string {
	if !p.Enable || p.NetnsPath == "" {
		return ""
	}
	var self, inst unix.Stat_t
	if unix.Stat("/proc/thread-self/ns/net", &self) != nil || unix.Stat(p.NetnsPath, &inst) != nil {
		return ""
	}
	if self.Dev == inst.Dev && self.Ino == inst.Ino {
		return "/proc/1/ns/net"
	}
	return ""
}

func verifyPeerGuard(l Listener, hostNetns string) error {
	var opts []nftables.ConnOption
	if hostNetns != "" {
		host, err := os.Open(hostNetns)
		if err != nil {
			return fmt.Errorf("open the host network namespace: %w", err)
		}
		defer host.Close()
		opts = append(opts, nftables.WithNetNSFd(int(host.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: ForwardTableName}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, name := range []string{"output", "input"} {
		if !slices.ContainsFunc(chains, func(ch *nftables.Chain) bool { return ch.Table.Name == ForwardTableName && ch.Name == name }) {
			return fmt.Errorf("table inet %s has no chain %s", ForwardTableName, name)
		}
	}
	for _, ch := range chains {
		if ch.Table.Name != ForwardTableName {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("chain %s: list rules: %w", ch.Name, err)
		}
		want := map[string]int{"output": 1, "input": 1}[ch.Name]
		n := 0
		for _, r := range rules {
			if cm, _ := userdata.GetString(r.UserData, userdata.TypeComment); cm == ruleComment(peerOwner, "peer-block") || cm == ruleComment(peerOwner, "peer-in-block") {
				n++
			}
		}
		if n < want {
			return fmt.Errorf("chain %s has no peer-block rule", ch.Name)
		}
	}
	set, err := c.GetSetByName(t, peerOwnersSet)
	if err != nil {
		return fmt.Errorf("set %s: %w", peerOwnersSet, err)
	}
	elems, err := c.GetSetElements(set)
	if err != nil {
		return fmt.Errorf("set %s: list elements: %w", peerOwnersSet, err)
	}
	port, _ := encodePort(fmt.Sprint(l.Port), true)
	uid, _ := encodeUID(fmt.Sprint(l.UID))
	key := string(append(port, uid...))
	for _, e := range elems {
		if string(e.Key) == key {
			return nil
		}
	}
	return fmt.Errorf("set %s has no element %d . %d", peerOwnersSet, l.Port, l.UID)
}

// SharedUIDWarnings reads the peer guard's record and names every other
// instance that runs as instance's uid (see sharedUIDWarnings). Setup
// prints them; a record it cannot read gives no warning (setup has just
// written it, and any error there has been reported).
func SharedUIDWarnings(instance string) []string {
	ls, err := readListeners()
	if err != nil {
		return nil
	}
	return sharedUIDWarnings(ls, instance)
}
