#!/usr/bin/env bash
# Runs the shell scripts the module generates (rendered by scripts-render.nix) for real,
# with bash, curl and coreutils, and fake `systemctl`/`opencode-launcher` that record their
# arguments:
#   - setup's directory check: a missing directory fails, naming createDirectory;
#   - the readiness check: returns as soon as a server answers /global/health (any status);
#   - setup's ExecReload: a failed setup restarts the setup unit; a resolv.conf replaced by
#     rename is detected through /proc/<pid>/root of a process that bind-mounted the old
#     one in its own mount namespace (as the server's unit does), and only then the server
#     is restarted. This part needs root (unshare -m, mount --bind) and skips loudly without.
# Needs NIXPKGS_LIB (see eval.sh); called by eval.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${NIXPKGS_LIB:?set NIXPKGS_LIB to a nixpkgs lib checkout}"

tmp=$(mktemp -d)
name="ocnixtest$$"
netnsdir="/etc/netns/opencode-$name"
hadNetnsEtc=0
if [ -d /etc/netns ]; then hadNetnsEtc=1; fi
holder=""
server=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
  if [ -d "$netnsdir" ]; then rm -rf "$netnsdir"; fi
  if [ "$hadNetnsEtc" = 0 ]; then rmdir /etc/netns 2>/dev/null || true; fi
}
trap cleanup EXIT
fail=0
ok() { printf 'ok    scripts: %s\n' "$*"; }
bad() {
  printf 'FAIL  scripts: %s\n' "$*"
  fail=1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nix-instantiate --eval --strict --json "$here/scripts-render.nix" \
  --arg lib "import $NIXPKGS_LIB/lib" --argstr name "$name" --arg port "$port" \
  --argstr directory "$tmp/project dir" >"$tmp/scripts.json" 2>"$tmp/render.err" || {
  echo "FAIL  scripts: render:"
  sed 's/^/      /' "$tmp/render.err"
  exit 1
}

# The stand-in store: real tools where the scripts need them, recorders for the rest.
store="$tmp/store"
mkdir -p "$store"/{curl,coreutils,diffutils,systemd,opencode-launcher}/bin
ln -s "$(command -v curl)" "$store/curl/bin/curl"
ln -s "$(command -v sleep)" "$store/coreutils/bin/sleep"
ln -s "$(command -v cmp)" "$store/diffutils/bin/cmp"
cat >"$store/systemd/bin/systemctl" <<SH
#!/usr/bin/env bash
echo "\$*" >>"$tmp/systemctl.log"
if [ "\$1" = show ]; then echo "\${FAKE_MAINPID:-0}"; fi
SH
cat >"$store/opencode-launcher/bin/opencode-launcher" <<SH
#!/usr/bin/env bash
echo "\$*" >>"$tmp/launcher.log"
exit "\${FAKE_SETUP_RC:-0}"
SH
chmod +x "$store"/*/bin/*
python3 - "$tmp/scripts.json" "$tmp" "$store" <<'PY'
import json, sys
scripts, tmp, store = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for k, text in scripts.items():
    text = text.replace("/nix/store/00000000000000000000000000000000-", store + "/")
    with open(f"{tmp}/{k}.sh", "w") as f:
        f.write(text)
PY

# --- directory check
if out=$(bash "$tmp/checkDirectory.sh" 2>&1); then
  bad "directory check passed for a missing directory"
elif grep -qF "services.opencode.instances.$name.createDirectory = true" <<<"$out" &&
  grep -qF "install -d -o opencode-$name -g opencode-$name -m 0750 '$tmp/project dir'" <<<"$out"; then
  ok "missing directory: $out"
else
  bad "missing directory, unexpected message: $out"
fi
mkdir "$tmp/project dir"
if out=$(bash "$tmp/checkDirectory.sh" 2>&1); then ok "existing directory passes"; else bad "existing directory: $out"; fi

# --- readiness: any HTTP status counts
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$tmp" >/dev/null 2>&1 &
server=$!
start=$SECONDS
if out=$(timeout 30 bash "$tmp/waitReady.sh" 2>&1); then
  ok "readiness returned after $((SECONDS - start)) s (404 from /global/health counts as up)"
else
  bad "readiness: $out"
fi
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=""

# --- setup reload
: >"$tmp/systemctl.log"
if out=$(FAKE_SETUP_RC=1 bash "$tmp/setupReload.sh" 2>&1); then
  bad "reload succeeded although setup failed"
elif grep -qx "restart --no-block opencode-$name-setup.service" "$tmp/systemctl.log"; then
  ok "failed setup on reload restarts the setup unit and fails the reload"
else
  bad "failed setup on reload: systemctl calls: $(cat "$tmp/systemctl.log"); output: $out"
fi

if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
  echo "SKIPPED: scripts: resolv.conf replacement through /proc/<pid>/root needs root and unshare"
else
  mkdir -p "$netnsdir"
  echo "nameserver 10.0.0.1" >"$netnsdir/resolv.conf"
  # The server's unit: its own mount namespace with the file bind-mounted, by inode.
  unshare -m --propagation private bash -c "mount --bind '$netnsdir/resolv.conf' /etc/resolv.conf && exec sleep 120" &
  holder=$!
  for _ in $(seq 1 50); do
    if grep -q "10.0.0.1" "/proc/$holder/root/etc/resolv.conf" 2>/dev/null; then break; fi
    sleep 0.1
  done
  : >"$tmp/systemctl.log"
  if FAKE_MAINPID=$holder bash "$tmp/setupReload.sh" >/dev/null 2>&1 && ! grep -q try-restart "$tmp/systemctl.log"; then
    ok "unchanged resolv.conf restarts nothing"
  else
    bad "unchanged resolv.conf: $(cat "$tmp/systemctl.log")"
  fi
  # What setup does: a new file renamed over the old one.
  echo "nameserver 10.0.0.2" >"$netnsdir/.resolv.conf.new"
  mv "$netnsdir/.resolv.conf.new" "$netnsdir/resolv.conf"
  if grep -q "10.0.0.1" "/proc/$holder/root/etc/resolv.conf"; then
    ok "premise: after the rename the process still sees the old file"
  else
    bad "premise: the process sees the new file after a rename; the restart would be needless"
  fi
  : >"$tmp/systemctl.log"
  if FAKE_MAINPID=$holder bash "$tmp/setupReload.sh" >"$tmp/reload.out" 2>&1 &&
    grep -qx "try-restart --no-block opencode-$name.service" "$tmp/systemctl.log"; then
    ok "replaced resolv.conf restarts the server: $(grep -m1 changed "$tmp/reload.out")"
  else
    bad "replaced resolv.conf: systemctl calls: $(cat "$tmp/systemctl.log"); output: $(cat "$tmp/reload.out")"
  fi
  : >"$tmp/systemctl.log"
  if FAKE_MAINPID=0 bash "$tmp/setupReload.sh" >/dev/null 2>&1 && ! grep -q try-restart "$tmp/systemctl.log"; then
    ok "server not running: nothing to restart"
  else
    bad "server not running: $(cat "$tmp/systemctl.log")"
  fi
fi
exit "$fail"
