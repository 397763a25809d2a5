package account

import (
	"errors"
	"os/user"
	"testing"
)

func TestLookupRefusesRootAndUnknown(t *testing.T) {
	if _, err := user.Lookup("root"); err != nil {
		t.Skipf("SKIPPED %s: this machine has no root user in its user database: %v", t.Name(), err)
	}
	if _, err := Lookup("root", "root"); !errors.Is(err, ErrPrivileged) {
		t.Errorf("Lookup(root) = %v, want ErrPrivileged", err)
	}
	if _, err := Lookup("ocnix-no-such-user", "ocnix-no-such-group"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Lookup(missing) = %v, want ErrUnknown", err)
	}
	// nobody exists on Debian and NixOS; its group is nogroup or nobody.
	for _, g := range []string{"nogroup", "nobody"} {
		if _, err := user.LookupGroup(g); err != nil {
			continue
		}
		a, err := Lookup("nobody", g)
		if err != nil {
			t.Fatalf("Lookup(nobody, %s) = %v", g, err)
		}
		if a.UID == 0 || a.GID == 0 || len(a.Groups) == 0 || a.Groups[0] == 0 {
			t.Errorf("Lookup(nobody) = %+v", a)
		}
		found := false
		for _, x := range a.Groups {
			found = found || x == a.GID
		}
		if !found {
			t.Errorf("Groups %v lack the primary gid %d", a.Groups, a.GID)
		}
		return
	}
	t.Skipf("SKIPPED %s (positive case): no nobody/nogroup account here", t.Name())
}
