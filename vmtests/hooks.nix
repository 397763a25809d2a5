# Init scripts: pre runs before post, both before the server; they run as the instance user,
# with its environment, inside its sandbox. A failing script fails setup with its exit status
# and output, and keeps the server down; a script over initScriptTimeout is stopped.
{ pkgs, common }:
let
  probe = "${common.probe}/bin/probe";
  orderFile = name: "/var/lib/opencode/instance-state/${name}/order";
in
pkgs.testers.runNixOSTest {
  name = "ocnix-hooks";

  nodes.machine =
    { ... }:
    {
      imports = [ common.baseModule ];
      services.opencode.instances = {
        good = {
          directory = "/srv/good";
          listen.port = 8831;
          environment = {
            HOOK_VAR = "hello-from-environment";
            OCNIX_TEST_ORDER_FILE = orderFile "good";
          };
          # Shell code: wrapped into a bash script with `set -euo pipefail`.
          preInitScript = ''
            echo "pre $(id -un) $HOOK_VAR" >> "$OCNIX_TEST_ORDER_FILE"
            if ${probe} read /srv/secret/token; then echo "pre-escaped" >> "$OCNIX_TEST_ORDER_FILE"; fi
          '';
          # A path to an executable.
          postInitScript = "${pkgs.writeShellScript "post-hook" ''
            echo "post $(id -un)" >> "$OCNIX_TEST_ORDER_FILE"
          ''}";
        };
        failing = {
          directory = "/srv/failing";
          listen.port = 8832;
          preInitScript = ''
            echo "failing-hook-marker: about to fail"
            exit 7
          '';
        };
        failing-post = {
          directory = "/srv/failing-post";
          listen.port = 8833;
          postInitScript = ''
            echo "failing-post-marker"
            false
          '';
        };
        slow = {
          directory = "/srv/slow";
          listen.port = 8834;
          initScriptTimeout = 3;
          preInitScript = "sleep 120";
        };
      };
      systemd.tmpfiles.rules = [
        "d /srv/good 0750 opencode-good opencode-good -"
        "d /srv/failing 0750 opencode-failing opencode-failing -"
        "d /srv/failing-post 0750 opencode-failing-post opencode-failing-post -"
        "d /srv/slow 0750 opencode-slow opencode-slow -"
        "d /srv/secret 0755 root root -"
        "f /srv/secret/token 0644 root root - top-secret"
      ];
    };

  testScript = common.pythonHelpers + ''
    start_all()

    with subtest("pre, then post, then the server; as the instance user, with its environment"):
        machine.wait_for_unit("opencode-good.service")
        machine.wait_until_succeeds("curl -sf -m 2 http://127.0.0.1:8831/global/health")
        order = machine.succeed("cat ${orderFile "good"}").strip().splitlines()
        assert order == ["pre opencode-good hello-from-environment", "post opencode-good", "server"], f"order file: {order}"

    with subtest("the scripts run inside the sandbox"):
        order_text = machine.succeed("cat ${orderFile "good"}")
        assert "pre-escaped" not in order_text, "preInitScript read a file outside the sandbox"

    with subtest("a failing preInitScript fails setup with its status and output, and the server stays down"):
        machine.wait_until_succeeds("systemctl is-failed opencode-failing-setup.service")
        machine.fail("systemctl is-active opencode-failing.service")
        machine.fail("curl -sf -m 2 http://127.0.0.1:8832/global/health")
        log = machine.succeed("journalctl -b -u opencode-failing-setup.service --no-pager")
        assert "failing-hook-marker" in log, f"the script's output is not in the setup log: {log}"
        assert "7" in log, f"the script's exit status is not in the setup log: {log}"

    with subtest("a failing postInitScript keeps the server down too"):
        machine.wait_until_succeeds("systemctl is-failed opencode-failing-post-setup.service")
        machine.fail("systemctl is-active opencode-failing-post.service")
        log = machine.succeed("journalctl -b -u opencode-failing-post-setup.service --no-pager")
        assert "failing-post-marker" in log, f"the script's output is not in the setup log: {log}"

    with subtest("a script over initScriptTimeout is stopped and fails setup"):
        machine.wait_until_succeeds("systemctl is-failed opencode-slow-setup.service", timeout=60)
        machine.fail("systemctl is-active opencode-slow.service")
        machine.fail("pgrep -u opencode-slow sleep")

    with subtest("a failed script runs again on the next setup"):
        machine.succeed("systemctl reset-failed opencode-failing-setup.service")
        machine.fail("systemctl start opencode-failing-setup.service")
        runs = machine.succeed("journalctl -b -u opencode-failing-setup.service --no-pager | grep -c failing-hook-marker").strip()
        assert int(runs) >= 2, f"the failed script did not run again (runs={runs})"
  '';
}
