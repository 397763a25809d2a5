package netpolicy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Teardown removes everything Ensure or EnsureShared created for this
// instance and nothing else: the host table, the veth pair (only if it
// carries this instance's alias or its peer is in this instance's netns),
// the named netns, the netns resolv.conf and the instance's listener in
// the shared table. When no instance veth is left it also restores the
// forwarding sysctls Ensure turned on, and when no instance is left at all
// it removes the shared table (see doc.go). It is idempotent and keeps going after
// an error, returning all of them. It works on plans with isolation
// disabled too, so disabling isolation and tearing down cleans up.
func Teardown(p Plan) error { return teardown(p, nil) }

// teardown removes the isolation of p and leaves keep as the instance's
// listener in the shared table (nil: unregistered).
func teardown(p Plan, keep *Listener) error {
	if p.Netns == "" {
		return fmt.Errorf("netpolicy: teardown: %w", bug(errors.New("plan was not made by Build")))
	}
	var errs []error
	if err := deleteTable(Table{Family: "ip", Name: HostTableName(p.Instance)}, -1); err != nil {
		errs = append(errs, fmt.Errorf("host: %w", err))
	}
	if err := deleteVeth(p); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetns(p.NetnsPath); err != nil {
		errs = append(errs, err)
	}
	// After the veth is gone, so that the last instance finds none left.
	if err := syncShared(p.Instance, keep); err != nil {
		errs = append(errs, fmt.Errorf("shared host table: %w", err))
	}
	if err := os.Remove(p.ResolvConf); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", p.ResolvConf, err))
	}
	// Only if empty: an operator may keep other files there.
	if err := os.Remove(filepath.Dir(p.ResolvConf)); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Dir(p.ResolvConf), err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netpolicy: teardown %s: %w", p.Netns, err)
	}
	return nil
}

// deleteVeth deletes the host end (which removes the peer too) when it is
// ours. Deleting it explicitly, rather than relying on the namespace's
// destruction, makes the removal synchronous and also works while a
// process still holds the netns open.
func deleteVeth(p Plan) error {
	link, err := netlink.LinkByName(p.HostVeth)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", p.HostVeth, err)
	}
	if link.Attrs().Alias != aliasOf(p) && !peerInNetns(p, link) {
		return nil // not ours: leave it alone
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("link %s: delete: %w", p.HostVeth, err)
	}
	return nil
}

func peerInNetns(p Plan, link netlink.Link) bool {
	ns, err := netns.GetFromPath(p.NetnsPath)
	if err != nil {
		return false
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	peer, err := h.LinkByName(p.PeerVeth)
	return err == nil && peer.Attrs().ParentIndex == link.Attrs().Index
}
