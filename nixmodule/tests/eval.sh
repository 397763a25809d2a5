#!/usr/bin/env bash
# Evaluation tests that need the real nixpkgs `lib` (lib.evalModules, lib.fileset, ...):
#   flake-test.nix    flake.nix's launcher package (version, vendorHash, Go 1.26)
#   module-test.nix   the NixOS module, evaluated over stubbed NixOS options (eval/)
#   scripts-test.sh   the shell scripts the module generates, run with bash (root part:
#                     a mount namespace, as the server's unit has)
# Each evaluates to the list of failing cases, which must be empty.
#
#   NIXPKGS_LIB=/path/to/nixpkgs.lib nixmodule/tests/eval.sh
#
# NIXPKGS_LIB is a checkout of nixpkgs' lib: the directory that holds lib/default.nix, such
# as github:nix-community/nixpkgs.lib or a nixpkgs checkout. Never commit it. Without it the
# tests are SKIPPED (exit 0) with a loud reason, since CI has no nixpkgs and no way to fetch
# it; the builtins-only checks in nixmodule/check.sh run everywhere.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${NIXPKGS_LIB:-}" ]; then
  echo "SKIPPED: the module and flake evaluation tests (nixmodule/tests/eval.sh) did NOT run:"
  echo "         NIXPKGS_LIB is not set. Point it to a nixpkgs lib checkout (the folder with"
  echo "         lib/default.nix, e.g. github:nix-community/nixpkgs.lib) to run them."
  exit 0
fi
if [ ! -f "$NIXPKGS_LIB/lib/default.nix" ]; then
  echo "eval.sh: NIXPKGS_LIB=$NIXPKGS_LIB has no lib/default.nix" >&2
  exit 2
fi
libexpr="import $(cd "$NIXPKGS_LIB" && pwd)/lib"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for t in flake-test module-test; do
  # stdout is the result; stderr apart (Debian's nix-bin warns there about nixbld).
  if out=$(nix-instantiate --eval --strict --json "$here/$t.nix" --arg lib "$libexpr" 2>"$tmp/$t.err") && [ "$out" = "[]" ]; then
    echo "ok    $t.nix"
  else
    echo "FAIL  $t.nix: failing cases:"
    if [ -n "${out:-}" ]; then
      printf '%s\n' "$out" | python3 -c 'import json,sys; [print("      -", c) for c in json.load(sys.stdin)]' 2>/dev/null || printf '      %s\n' "$out"
    fi
    grep -v "build-users-group" "$tmp/$t.err" | sed 's/^/      /' || true
    fail=1
  fi
done

# The generated shell scripts, run for real. Its root part makes a mount namespace and a file
# under /etc/netns: under the global lock that privileged tests share.
lock=()
if [ "$(id -u)" = 0 ] && command -v flock >/dev/null; then lock=(flock /tmp/ocnix-root.lock); fi
if ! "${lock[@]}" bash "$here/scripts-test.sh"; then
  fail=1
fi

# The message a user sees when their nixpkgs lacks Go 1.26.
cat >"$tmp/nogo.nix" <<NIX
{ lib }:
((import $here/../../flake.nix).outputs {
  self = { };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: { go.version = "1.25.4"; buildGoModule = a: a; });
  };
}).packages.x86_64-linux.opencode-launcher.pname
NIX
if nix-instantiate --eval --strict "$tmp/nogo.nix" --arg lib "$libexpr" >/dev/null 2>"$tmp/nogo.err"; then
  echo "FAIL  a nixpkgs without Go 1.26 evaluated the launcher"
  fail=1
elif grep -q "needs Go 1.26" "$tmp/nogo.err"; then
  echo "ok    no Go 1.26: $(grep -m1 'needs Go 1.26' "$tmp/nogo.err" | sed 's/^ *//')"
else
  echo "FAIL  no Go 1.26: evaluation failed without the expected message:"
  sed 's/^/      /' "$tmp/nogo.err"
  fail=1
fi
exit "$fail"
