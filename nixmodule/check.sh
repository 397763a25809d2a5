#!/usr/bin/env bash
# CI checks for the Nix side of ocnix. Needs only `nix-instantiate` (Debian: nix-bin) and,
# for the contract test, a built launcher; the vendorHash check also needs `go` and the Go
# module proxy (or a warm module cache). No nixpkgs.
#
#   nixmodule/check.sh               # all checks (LAUNCHER defaults to ./bin/opencode-launcher)
#   nixmodule/check.sh --nix-only    # skip the launcher half of the contract test and the vendorHash check
#   LAUNCHER=/path/to/opencode-launcher nixmodule/check.sh
#
# 1. `nix-instantiate --parse` on every .nix file of the repository; flake.nix's vendorHash
#    recomputed from go.mod/go.sum (scripts/check-vendor-hash.sh).
# 2. The builtins-only validators (nixmodule/lib.nix) against their table tests, and the
#    VM tests' Python scripts rendered with a stand-in pkgs and compiled (they cannot run here).
#    With NIXPKGS_LIB set (a nixpkgs lib checkout), the module and flake evaluation tests
#    (nixmodule/tests/eval.sh); without it they are reported as SKIPPED.
# 3. Contract test: nixmodule/spec.nix on each fixture (nixmodule/fixtures/*.nix) gives the
#    instance spec JSON; `opencode-launcher check` must accept it and `explain --json` must
#    print JSON. Fixtures named bad-*.nix must be REJECTED by `check`, naming the key that
#    their first line's comment promises (see the EXPECT table below).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

nix_only=0
for a in "$@"; do
  case "$a" in
  --nix-only) nix_only=1 ;;
  -h | --help)
    sed -n '2,19p' "$0"
    exit 0
    ;;
  *)
    echo "check.sh: unknown argument $a" >&2
    exit 2
    ;;
  esac
done

if ! command -v nix-instantiate >/dev/null; then
  echo "check.sh: nix-instantiate not found; install it (Debian: apt-get install -y nix-bin)" >&2
  exit 2
fi

LAUNCHER=${LAUNCHER:-$root/bin/opencode-launcher}
if [ "$nix_only" = 0 ] && [ ! -x "$LAUNCHER" ]; then
  echo "check.sh: launcher $LAUNCHER not found; build it with" >&2
  echo "  go build -o bin/opencode-launcher ./cmd/opencode-launcher" >&2
  echo "or run with --nix-only to skip the launcher half" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { printf 'ok    %s\n' "$*"; }
bad() {
  printf 'FAIL  %s\n' "$*"
  fail=1
}

# Keys a bad fixture must be rejected for (a substring of the launcher's message).
declare -A EXPECT=(
  [bad-cidr]="networkIsolation.outboundAllowCidrs"
  [bad-paths]="directory"
  [bad-domain]="networkIsolation.outboundAllowDomains[1]"
)

echo "== nix-instantiate --parse"
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  if out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then :; else
    bad "parse $f"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
done < <(find . \( -path ./.git -o -path ./node_modules -o -path ./testdata-tmp \) -prune -o -name '*.nix' -type f -print0)
ok "parsed $n .nix files"

echo "== no meta.doc in the module"
# An out-of-tree module's meta.doc stops nixos-rebuild on every host that builds the manual
# (its ids cannot be in nixpkgs' redirects.json; nixpkgs issue 412451). The evaluation test
# says the same with NIXPKGS_LIB; this runs everywhere.
if grep -HnE '(^|[^A-Za-z_])(meta\.doc|doc[[:space:]]*=)' nixmodule/*.nix | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#'; then
  bad "meta.doc is set above: keep the module's documentation in docs/nixos.md"
else
  ok "no meta.doc"
fi

echo "== flake.nix vendorHash against go.mod/go.sum (scripts/check-vendor-hash.sh)"
if [ "$nix_only" = 1 ]; then
  echo "SKIP  vendorHash: --nix-only (the check needs go)"
elif out=$(bash scripts/check-vendor-hash.sh 2>&1); then
  ok "$out"
else
  bad "vendorHash:"
  printf '%s\n' "$out" | sed 's/^/      /'
fi

echo "== nixmodule/lib.nix table tests"
# stdout is the result; stderr is kept apart, since Debian's nix-bin warns there about a
# missing nixbld group on hosts that never made one.
if out=$(nix-instantiate --eval --strict --json nixmodule/tests/lib-test.nix 2>"$tmp/lib-test.err") && [ "$out" = "[]" ]; then
  ok "lib-test.nix"
else
  bad "lib-test.nix: failing cases: $out"
  sed 's/^/      /' "$tmp/lib-test.err"
fi

echo "== vmtests: test scripts render and compile (python3 -m py_compile)"
if nix-instantiate --eval --strict --json nixmodule/tests/vmtest-scripts.nix >"$tmp/scripts.json" 2>"$tmp/scripts.err"; then
  if command -v python3 >/dev/null; then
    if out=$(python3 - "$tmp/scripts.json" "$tmp" <<'PY' 2>&1
import json, py_compile, sys
scripts, tmp = json.load(open(sys.argv[1])), sys.argv[2]
bad = 0
for name, text in sorted(scripts.items()):
    path = f"{tmp}/vmtest-{name}.py"
    with open(path, "w") as f:
        f.write(text)
    try:
        py_compile.compile(path, doraise=True)
    except py_compile.PyCompileError as e:
        print(f"{name}: {e}")
        bad = 1
print(f"{len(scripts)} scripts")
sys.exit(bad)
PY
    ); then
      ok "vmtests scripts compile ($out)"
    else
      bad "vmtests scripts:"
      printf '%s\n' "$out" | sed 's/^/      /'
    fi
  else
    ok "vmtests scripts render (python3 not found: compile step skipped)"
  fi
else
  bad "vmtests scripts do not render:"
  sed 's/^/      /' "$tmp/scripts.err"
fi

echo "== module and flake evaluation with nixpkgs lib (nixmodule/tests/eval.sh; NIXPKGS_LIB)"
# Skips loudly, without failing, when NIXPKGS_LIB is unset: CI has no nixpkgs.
if out=$(bash nixmodule/tests/eval.sh 2>&1); then
  case "$out" in
  SKIPPED*) printf '%s\n' "$out" ;;
  *) ok "evaluation tests:" && printf '%s\n' "$out" | sed 's/^/      /' ;;
  esac
else
  bad "evaluation tests:"
  printf '%s\n' "$out" | sed 's/^/      /'
fi

echo "== contract: spec.nix fixtures -> opencode-launcher check/explain"
for fx in nixmodule/fixtures/*.nix; do
  base=$(basename "$fx" .nix)
  case "$base" in _*) continue ;; esac
  json="$tmp/$base.json"
  if ! nix-instantiate --eval --strict --json \
    --arg fixture "$root/$fx" \
    -E "{ fixture }: import $root/nixmodule/spec.nix (import fixture)" >"$json" 2>"$tmp/$base.err"; then
    bad "$base: spec.nix does not evaluate"
    sed 's/^/      /' "$tmp/$base.err"
    continue
  fi
  if [ "$nix_only" = 1 ]; then
    ok "$base: evaluates ($(wc -c <"$json") bytes of JSON)"
    continue
  fi
  case "$base" in
  bad-*)
    if "$LAUNCHER" check --config "$json" >"$tmp/$base.out" 2>&1; then
      bad "$base: opencode-launcher check accepted a spec it must reject"
    elif [ -n "${EXPECT[$base]:-}" ] && ! grep -qF "${EXPECT[$base]}" "$tmp/$base.out"; then
      bad "$base: rejected, but the message does not name ${EXPECT[$base]}:"
      sed 's/^/      /' "$tmp/$base.out"
    else
      ok "$base: rejected as expected: $(head -n 3 "$tmp/$base.out" | tr '\n' ' ')"
    fi
    ;;
  *)
    if ! "$LAUNCHER" check --config "$json" >"$tmp/$base.out" 2>&1; then
      bad "$base: opencode-launcher check rejected it:"
      sed 's/^/      /' "$tmp/$base.out"
      continue
    fi
    if ! "$LAUNCHER" explain --json --config "$json" >"$tmp/$base.explain" 2>"$tmp/$base.explain.err"; then
      bad "$base: opencode-launcher explain --json failed:"
      sed 's/^/      /' "$tmp/$base.explain.err"
      continue
    fi
    # explain --json must print one JSON document (checked with nix's own JSON parser).
    if ! nix-instantiate --eval --strict -E "builtins.isAttrs (builtins.fromJSON (builtins.readFile $tmp/$base.explain))" >/dev/null 2>"$tmp/$base.explain.err"; then
      bad "$base: explain --json output is not a JSON object:"
      head -c 400 "$tmp/$base.explain" | sed 's/^/      /'
      continue
    fi
    ok "$base: check and explain --json"
    ;;
  esac
done

if [ "$fail" != 0 ]; then
  echo "nixmodule/check.sh: FAILED" >&2
  exit 1
fi
echo "nixmodule/check.sh: all passed"
