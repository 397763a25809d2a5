#!/usr/bin/env bash
# Renders the units that nixmodule/ generates for each systemdtests/fixtures/*.nix into
# systemdtests/units/<fixture>/, with store paths mapped to the container's binaries
# (store-paths.tsv), and records the hash of its inputs in units/INPUTS. Commit the result:
# CI has no nixpkgs lib, so it boots the committed units and only checks that INPUTS still
# matches (inputs-hash.sh). Run it after every change to nixmodule/ or the fixtures:
#
#   systemdtests/render.sh /path/to/nixpkgs-lib     # a checkout holding lib/default.nix
#   NIXPKGS_LIB=/path/to/nixpkgs-lib systemdtests/render.sh
#
# Needs nix-instantiate and jq; writes to the Nix store (builtins.toFile, for the scripts the
# module writes), so run it as a user that may (root with Debian's nix-bin).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=${1:-${NIXPKGS_LIB:-}}
die() {
  echo "render.sh: $*" >&2
  exit 1
}
[ -n "$lib" ] || die "usage: $0 NIXPKGS_LIB_DIR (a checkout of nixpkgs' lib, e.g. git clone https://github.com/nix-community/nixpkgs.lib)"
[ -f "$lib/lib/default.nix" ] || die "$lib/lib/default.nix not found: pass the folder that holds lib/"
lib=$(cd "$lib" && pwd)
for c in nix-instantiate jq sed grep; do command -v "$c" >/dev/null || die "$c not found"; done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$tmp/units"
mkdir -p "$out"
storeRe='/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+'

for fx in "$here"/fixtures/*.nix; do
  name=$(basename "$fx" .nix)
  d="$out/$name"
  mkdir -p "$d/system" "$d/files" "$d/instances"
  if ! nix-instantiate --eval --strict --json --read-write-mode "$here/nix/render.nix" \
    --arg lib "import $lib/lib" --arg configuration "$fx" >"$tmp/$name.json" 2>"$tmp/$name.err"; then
    grep -v "build-users-group" "$tmp/$name.err" >&2 || true
    die "evaluating fixture $name failed (above)"
  fi
  j="$tmp/$name.json"
  jq -r '.units | keys[]' "$j" | while IFS= read -r u; do
    jq -r --arg u "$u" '.units[$u]' "$j" >"$d/system/$u"
  done
  jq -r '.specs | keys[]' "$j" | while IFS= read -r n; do
    jq -r --arg n "$n" '.specs[$n]' "$j" | jq -S . >"$d/instances/$n.json"
    # The units must name the spec where the container has it.
    f=$(jq -r --arg n "$n" '.specFiles[$n]' "$j")
    printf '%s\n' "$f" >>"$tmp/$name.specfiles"
  done
  jq -r '.sysusers' "$j" >"$d/sysusers.conf"
  jq -r '.tmpfiles' "$j" >"$d/tmpfiles.conf"
  jq -r '.sysctl' "$j" >"$d/sysctl.conf"
  jq -r '.warnings[]' "$j" >"$d/warnings.txt"
  if [ -s "$d/warnings.txt" ]; then
    sed "s/^/render.sh: $name: warning: /" "$d/warnings.txt" >&2
  else
    rm "$d/warnings.txt"
  fi
  # Files the renderer wrote to the store (scripts), and the files they name, recursively.
  while :; do
    new=0
    while IFS= read -r p; do
      [ -f "$p" ] || continue
      b=${p#/nix/store/*-}
      [ -e "$d/files/$b" ] && continue
      cp "$p" "$d/files/$b"
      chmod 0755 "$d/files/$b"
      new=1
    done < <(grep -rhoE "$storeRe" "$d" | sort -u)
    [ "$new" = 1 ] || break
  done
done

# The substitution table, then the copied files; anything left is a missing table line.
sedArgs=()
while IFS=$'\t' read -r pat repl; do
  case "$pat" in '#'* | '') continue ;; esac
  sedArgs+=(-e "s#/nix/store/[0-9a-z]{32}-${pat}#${repl}#g")
done <"$here/store-paths.tsv"
for d in "$out"/*/; do
  for f in "$d"files/*; do
    [ -e "$f" ] || continue
    b=$(basename "$f")
    sedArgs+=(-e "s#/nix/store/[0-9a-z]{32}-${b//./\\.}([^A-Za-z0-9+._?=-]|\$)#/etc/ocnix-test/files/${b}\\1#g")
  done
done
find "$out" -type f -print0 | xargs -0 sed -E -i "${sedArgs[@]}"
if left=$(grep -rnoE "$storeRe[^[:space:]\"]*" "$out"); then
  printf '%s\n' "$left" | sed "s#^$out/##" >&2
  die "store paths above have no line in systemdtests/store-paths.tsv"
fi

"$here/inputs-hash.sh" >"$out/INPUTS"
rm -rf "$here/units"
mv "$out" "$here/units"
echo "render.sh: rendered $(find "$here/units" -name '*.service' -o -name '*.socket' | wc -l) units for $(ls "$here/fixtures" | wc -l) fixtures into systemdtests/units (inputs $(cat "$here/units/INPUTS"))"
