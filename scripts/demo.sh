#!/usr/bin/env bash
# The main job: one real opencode server from examples/demo.json, confined by
# Landlock, seccomp and the unix-socket supervisor, in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=${1:-examples/demo.json}
launcher=bin/opencode-launcher
user=opencode-demo
port=18787

if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (it creates the user $user and drops to it)" >&2; exit 77; fi

# What the NixOS module does declaratively: the instance user, the project
# directory, and a secrets file outside the store and outside the sandbox.
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/opencode/instance-state/demo --shell /usr/sbin/nologin "$user"
install -d -m 0755 /srv/ocnix-demo
install -d -o "$user" -g "$user" -m 0750 /srv/ocnix-demo/project
secrets=/srv/ocnix-demo/secrets.env
if [ ! -f "$secrets" ]; then
  (umask 077; printf 'ANTHROPIC_API_KEY=sk-ocnix-demo-not-a-real-key\n' >"$secrets")
fi
# opencode serves every route (provider keys included) without auth unless a
# password is set: the demo sets one, as every deployment should.
if ! grep -q '^OPENCODE_SERVER_PASSWORD=' "$secrets"; then
  printf 'OPENCODE_SERVER_PASSWORD=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >>"$secrets"
fi
password=$(sed -n 's/^OPENCODE_SERVER_PASSWORD=//p' "$secrets")

"$launcher" check --config "$spec"
"$launcher" setup --config "$spec"

url="http://127.0.0.1:$port"
(
  for _ in $(seq 1 120); do
    if out=$(curl -fsS -m 2 -u "opencode:$password" "$url/global/health" 2>/dev/null); then
      printf '\nocnix demo: opencode is up at %s  (health: %s)\n' "$url" "$out"
      printf 'ocnix demo: user "opencode", password in %s (OPENCODE_SERVER_PASSWORD)\n' "$secrets"
      printf 'ocnix demo: try  curl -u opencode:$(sed -n "s/^OPENCODE_SERVER_PASSWORD=//p" %s) %s/config   — Ctrl-C stops it\n\n' "$secrets" "$url"
      exit 0
    fi
    sleep 0.5
  done
  echo "ocnix demo: $url did not answer within 60 s" >&2
) &
echo "ocnix demo: starting opencode for $spec at $url (sandboxed; see: $launcher explain --config $spec)"
# Not exec: on the way out, teardown takes the instance's port back out of the host's
# peer guard (table inet ocnix), which setup registered; the last teardown removes it.
trap ':' INT TERM  # a handler, not ignore: the launcher must still get them
status=0
"$launcher" run --config "$spec" || status=$?
"$launcher" teardown --config "$spec" >/dev/null || echo "ocnix demo: teardown failed" >&2
exit "$status"
