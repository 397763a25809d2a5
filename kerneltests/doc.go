// Package kerneltests is the kernel tier (`make test-kernels`): it boots
// Debian's own kernels (bookworm's 6.1, bookworm-backports' 6.12) under QEMU
// with a small initramfs built on the host, runs the privileged tests of
// sandbox, sandbox/unixgate and netpolicy there as root, and the guest tests
// of this package, and turns the guest's console into ordinary subtests named
// TestKernels/<kernel release>/<package>/<test>.
//
// The tests of this machine's kernel emulate lower Landlock ABIs by asking
// for fewer rights; this tier runs them on kernels that really have only
// those rights, and the seccomp user-notification, pidfd, /proc and nft
// features of that release.
//
// Inputs: the kernel packages unpacked by scripts/install-deps.sh under
// /var/cache/ocnix-kernels/<release>/ (boot/vmlinuz-*, lib/modules), QEMU
// (qemu-system-x86_64, TCG: no KVM needed) and busybox-static. Missing ones
// skip loudly, and fail when OCNIX_TEST_REQUIRE_ROOT=1 (CI). The initramfs
// is cached there by content hash. Traffic stays inside the guest: it has no
// network device, and the netpolicy tests make their own namespaces there.
package kerneltests
