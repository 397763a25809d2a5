// Package systemdtests runs the units that the NixOS module generates on a real
// systemd: it boots Debian's systemd as PID 1 in a systemd-nspawn container on
// this machine, installs the units that render.sh rendered from nixmodule/ for
// the fixtures in fixtures/, and drives the VM tests' scenarios there. See
// README.md in this directory; `make test-systemd` runs it.
package systemdtests
