#!/usr/bin/env bash
# Recomputes the flake's `vendorHash` from go.mod/go.sum and compares it with flake.nix, so
# that a dependency change without a matching flake.nix edit fails CI instead of every
# `nix build` and `nixos-rebuild` downstream.
#
#   scripts/check-vendor-hash.sh          # exit 0 if flake.nix is right, 1 (naming the new value) if not
#   scripts/check-vendor-hash.sh --print  # print the value computed from go.mod/go.sum
#
# It does what buildGoModule's `goModules` derivation does (nixpkgs
# pkgs/build-support/go/module.nix): `go mod vendor` in the source tree, then the NAR
# sha256 of the resulting vendor directory (modules.txt included), in SRI form. The
# flake's launcherSrc drops only directories without Go packages (nixmodule, vmtests,
# docs, examples), so vendoring the whole repository gives the same directory.
# Needs `go` (the version of nixpkgs' go_1_26; `vendor/modules.txt` has not changed
# format across Go 1.2x) and `nix` from Debian's nix-bin. Uses the module proxy or cache.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

print_only=0
case "${1:-}" in
--print) print_only=1 ;;
"") ;;
*)
  echo "check-vendor-hash.sh: unknown argument $1" >&2
  exit 2
  ;;
esac

for tool in go nix; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-vendor-hash.sh: $tool not found (go: /usr/local/go/bin; nix: apt-get install nix-bin)" >&2
    exit 2
  fi
done

# Vendoring the whole repository equals vendoring the flake's launcherSrc only while the
# directories launcherSrc leaves out hold no Go files (keep this list in step with flake.nix).
if stray=$(git ls-files -- 'nixmodule/*.go' 'vmtests/*.go' 'docs/*.go' 'examples/*.go' 2>/dev/null) && [ -n "$stray" ]; then
  echo "check-vendor-hash.sh: Go files in directories that flake.nix's launcherSrc excludes:" >&2
  printf '  %s\n' $stray >&2
  echo "move them, or vendor launcherSrc's files only in this script" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

# As in the Nix build: modules mode, this toolchain, no vendor directory in the tree.
if [ -e vendor ]; then
  echo "check-vendor-hash.sh: ./vendor exists; the flake vendors itself, remove it" >&2
  exit 2
fi
if ! GO111MODULE=on GOTOOLCHAIN=local GOFLAGS= go mod vendor -o "$tmp/vendor" 2>"$tmp/vendor.err"; then
  echo "check-vendor-hash.sh: go mod vendor failed:" >&2
  sed 's/^/  /' "$tmp/vendor.err" >&2
  exit 2
fi
# stderr apart: Debian's nix warns there about a missing nixbld group.
if ! got=$(nix --extra-experimental-features nix-command hash path --type sha256 "$tmp/vendor" 2>"$tmp/hash.err"); then
  echo "check-vendor-hash.sh: nix hash path failed:" >&2
  sed 's/^/  /' "$tmp/hash.err" >&2
  exit 2
fi

if [ "$print_only" = 1 ]; then
  printf '%s\n' "$got"
  exit 0
fi

# The one line that holds it: `vendorHash = "sha256-…";` in flake.nix.
mapfile -t lines < <(grep -E '^[[:space:]]*vendorHash = "[^"]*";' flake.nix || true)
if [ "${#lines[@]}" != 1 ]; then
  echo "check-vendor-hash.sh: expected exactly one line 'vendorHash = \"sha256-…\";' in flake.nix, found ${#lines[@]}" >&2
  exit 1
fi
want=$(sed -E 's/^[[:space:]]*vendorHash = "([^"]*)";.*/\1/' <<<"${lines[0]}")

if [ "$got" != "$want" ]; then
  cat >&2 <<MSG
check-vendor-hash.sh: flake.nix is out of date with go.mod/go.sum.
  flake.nix has     vendorHash = "$want";
  go.sum vendors to vendorHash = "$got";
Set   vendorHash = "$got";   in flake.nix (the dependencies changed; every Nix build of the
launcher fails with a hash mismatch until it does).
MSG
  exit 1
fi
echo "vendorHash $got matches go.mod/go.sum"
