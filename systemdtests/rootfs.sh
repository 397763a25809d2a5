#!/usr/bin/env bash
# Prints the path of a Debian 12 root that boots systemd under systemd-nspawn, building it
# with debootstrap from the host's apt mirror the first time. The root is cached under
# $OCNIX_SYSTEMD_ROOT_CACHE (default /var/cache/ocnix-systemd-root), keyed by this script's
# content (suite, mirror and package list live here), so the second run is instant.
# The container boots it with --volatile=overlay: the cached root is never written.
# Run as root, under `flock /tmp/ocnix-root.lock` when other tests run at the same time.
set -euo pipefail

suite=bookworm
# systemd + dbus: PID 1 and systemctl; libseccomp2: the launcher is linked against it;
# nftables, iproute2: what setup programs and the tests inspect; postgresql: a real unix
# socket for the socket gate; curl: the module's readiness check; procps: debugging.
packages=systemd,systemd-sysv,dbus,libseccomp2,nftables,iproute2,postgresql,curl,procps,ca-certificates

cache=${OCNIX_SYSTEMD_ROOT_CACHE:-/var/cache/ocnix-systemd-root}
mirror=${OCNIX_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The host's own mirror: the only one CI can reach.
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\/debian\) .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

key=$(cat "$0" | sha256sum | cut -c1-16)
root="$cache/$suite-$key"
if [ -e "$root/.ocnix-complete" ]; then
  echo "$root"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "rootfs.sh: must run as root (debootstrap)" >&2
  exit 77
fi
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap not found (apt-get install debootstrap)" >&2; exit 69; }

mkdir -p "$cache"
tmp="$root.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
echo "rootfs.sh: debootstrap $suite from $mirror into $root (first run only)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >"$cache/debootstrap-$key.log" 2>&1 || {
  echo "rootfs.sh: debootstrap failed; last lines of $cache/debootstrap-$key.log:" >&2
  tail -n 20 "$cache/debootstrap-$key.log" >&2
  exit 1
}

echo ocnix-systemd >"$tmp/etc/hostname"
# Nothing but what the tests start: no getty on the console, no timers, no network config
# (the container has its own empty network namespace; the tests add what they need).
for u in getty@tty1.service console-getty.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer systemd-networkd.service systemd-resolved.service \
  systemd-timesyncd.service; do
  ln -sfn /dev/null "$tmp/etc/systemd/system/$u"
done
# The machine-id is made fresh at each boot on the volatile overlay.
: >"$tmp/etc/machine-id"
rm -rf "$tmp/var/cache/apt/archives"/*.deb "$tmp/var/lib/apt/lists"/* 2>/dev/null || true
touch "$tmp/.ocnix-complete"
# A concurrent run may have finished the same root first: keep theirs.
if ! mv -T "$tmp" "$root" 2>/dev/null && [ ! -e "$root/.ocnix-complete" ]; then
  echo "rootfs.sh: cannot move $tmp to $root" >&2
  exit 1
fi
# Older keys are dead weight (their logs and finished roots, not runs in progress).
find "$cache" -mindepth 1 -maxdepth 1 -name "$suite-*" ! -name "$suite-$key*" ! -name "*.tmp.*" -exec rm -rf {} + 2>/dev/null || true
find "$cache" -mindepth 1 -maxdepth 1 -name "debootstrap-*.log" ! -name "debootstrap-$key.log" -delete 2>/dev/null || true
echo "$root"
