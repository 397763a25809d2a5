#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian 12 machine
# (as root): Debian packages, the pinned opencode server from npm, Go modules.
# Idempotent and quick when everything is present: a stamp keyed by this
# script's and the npm lock's content skips the slow part.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${OCNIX_DEPS_PREFIX:-/opt/ocnix}
stamp="$prefix/.deps-$(cat "$0" "$here/deps/opencode/package-lock.json" | sha256sum | cut -c1-16)"

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (it installs Debian packages and /opt/ocnix); e.g. sudo $0" >&2
  exit 77
fi

if [ ! -e "$stamp" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # bookworm-backports holds the 6.12 kernel of the kernel tier (kerneltests/).
  # From the mirror the machine already uses for bookworm (deb822 or one-line sources).
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    if [ -n "$mirror" ]; then
      echo "deb $mirror bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
    else
      echo "install-deps: no bookworm apt source found; the kernel tier's 6.12 kernel (bookworm-backports) will be missing" >&2
    fi
  fi
  apt-get update -qq
  # nftables: looking at rulesets in tests; libseccomp-dev + pkg-config: cgo build;
  # nix-bin: nix-instantiate for the Nix checks; postgresql: a real unix socket;
  # iproute2: test namespaces; systemd: systemd-socket-activate/-proxyd for the
  # published port; bubblewrap: the startup benchmark's peer; strace, psmisc: debugging;
  # systemd-container, debootstrap: the systemd tier's container (systemdtests/).
  # git, ripgrep: the agent's grep and glob tools run rg from PATH (opencode downloads
  # it at run time otherwise), and it runs git in git projects.
  apt-get install -y -qq --no-install-recommends \
    nftables libseccomp-dev pkg-config gcc libc6-dev nix-bin postgresql postgresql-client \
    iproute2 systemd bubblewrap strace psmisc curl ca-certificates git make ripgrep \
    systemd-container debootstrap \
    qemu-system-x86 busybox-static kmod xz-utils >/dev/null
  # The image's Node.js (nodesource) bundles npm; Debian's npm conflicts with it.
  command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  mkdir -p "$prefix/opencode"
  cp "$here/deps/opencode/package.json" "$here/deps/opencode/package-lock.json" "$prefix/opencode/"
  # The binary ships in the optional dependency opencode-linux-x64; opencode-ai's
  # postinstall only links it, so scripts are not needed. `npm ci` refuses this
  # lock because npm leaves other platforms' optional packages out of it; `npm
  # install --no-save` still installs exactly the locked versions and integrity.
  (cd "$prefix/opencode" && npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error)
  rm -f "$prefix"/.deps-*
  touch "$stamp"
fi

# The kernel tier's kernels: the current Debian 12 (6.1) and bookworm-backports
# (6.12) cloud kernels, unpacked (not installed: the host's /boot is not
# touched) under /var/cache/ocnix-kernels/<release>/ with modules.dep.
kcache=/var/cache/ocnix-kernels
for meta in "linux-image-cloud-amd64/bookworm-security" "linux-image-cloud-amd64/bookworm-backports"; do
  pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  [ -n "$pkg" ] || { echo "install-deps: cannot resolve $meta (apt-get update?)" >&2; exit 1; }
  rel=${pkg#linux-image-}
  if [ ! -e "$kcache/$rel/lib/modules/$rel/modules.dep" ]; then
    mkdir -p "$kcache/debs"
    (cd "$kcache/debs" && apt-get download -qq "$pkg")
    mkdir -p "$kcache/$rel"
    dpkg-deb -x "$kcache"/debs/"$pkg"_*.deb "$kcache/$rel"
    depmod -b "$kcache/$rel" "$rel"
    rm -f "$kcache"/debs/"$pkg"_*.deb
  fi
done

bin="$prefix/opencode/node_modules/opencode-linux-x64/bin/opencode"
if ! grep -qw avx2 /proc/cpuinfo; then
  bin="$prefix/opencode/node_modules/opencode-linux-x64-baseline/bin/opencode"
fi
ln -sfn "$bin" "$prefix/opencode-bin"
"$prefix/opencode-bin" --version >/dev/null

(cd "$here" && go mod download)

# staticcheck for `make lint`, pinned; built once into $prefix/tools.
staticcheck_version=0.8.2 # release 2026.2.2
if ! "$prefix/tools/staticcheck" -version 2>/dev/null | grep -F "($staticcheck_version)" >/dev/null; then
  GOBIN="$prefix/tools" go install "honnef.co/go/tools/cmd/staticcheck@v$staticcheck_version"
fi
echo "install-deps: ok (opencode $("$prefix/opencode-bin" --version), $(go version | cut -d' ' -f3))"
