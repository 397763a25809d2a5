#!/usr/bin/env bash
# Prints the hash of everything the committed units/ are rendered from: the NixOS module,
# the tier's fixtures, the renderer and its stubs, the store-path table and render.sh.
# render.sh records it in units/INPUTS; the tier compares it before it boots anything.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  # The module's own tests and spec fixtures do not shape the units.
  find nixmodule -name '*.nix' ! -path 'nixmodule/tests/*' ! -path 'nixmodule/fixtures/*'
  ls systemdtests/fixtures/*.nix systemdtests/nix/*.nix
  echo systemdtests/store-paths.tsv
  echo systemdtests/render.sh
} | LC_ALL=C sort | while IFS= read -r f; do sha256sum "$f"; done | sha256sum | cut -d' ' -f1
