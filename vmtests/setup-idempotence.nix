# Setup converges: running it again changes nothing (files, modes, namespace, nft rules);
# init scripts run once per content (again only after a change, or with --rerun-init); a
# removed opencode.json is restored by the next run.
{ pkgs, common }:
let
  stateDir = "/var/lib/opencode/instance-state/idem";
  # Root-owned bookkeeping: the instance reads it, never writes it.
  launcherDir = "/var/lib/opencode/launcher/idem";
  spec = "/etc/ocnix/instances/idem.json";
in
pkgs.testers.runNixOSTest {
  name = "ocnix-setup-idempotence";

  nodes.machine =
    { lib, ... }:
    {
      imports = [ common.baseModule ];
      services.opencode.instances.idem = {
        directory = "/srv/idem";
        listen.port = 8821;
        networkIsolation = {
          enable = true;
          outboundAllowCidrs = [ "192.0.2.0/24" ];
        };
        preInitScript = ''
          echo "pre v1" >> "$HOME/pre-runs"
        '';
        postInitScript = ''
          echo "post v1" >> "$HOME/post-runs"
        '';
      };
      systemd.tmpfiles.rules = [ "d /srv/idem 0750 opencode-idem opencode-idem -" ];

      # The same machine with a changed preInitScript (postInitScript unchanged).
      specialisation.pre-v2.configuration = {
        services.opencode.instances.idem.preInitScript = lib.mkForce ''
          echo "pre v2" >> "$HOME/pre-runs"
        '';
      };
    };

  testScript = common.pythonHelpers + ''
    def snapshot():
        files = machine.succeed(
            "find ${stateDir} -path '*/data' -prune -o -path '*/cache' -prune -o -path '*/tmp' -prune "
            "-o -printf '%P %y %m %U:%G\\n' | sort"
        )
        config = machine.succeed("sha256sum ${launcherDir}/opencode.json")
        netns = machine.succeed("ip netns list | grep -c '^opencode-idem' || true")
        links = machine.succeed("ip -o link show | awk -F': ' '{print $2}' | sort")
        # -s: stateless, without counters (health checks move them)
        rules = machine.succeed("ip netns exec opencode-idem nft -s list ruleset")
        return {"files": files, "config": config, "netns": netns, "links": links, "rules": rules}

    def lines(path):
        return machine.succeed(f"cat {path}").strip().splitlines()

    start_all()
    machine.wait_for_unit("opencode-idem-setup.service")
    machine.wait_for_unit("opencode-idem.service")
    machine.wait_until_succeeds("curl -sf -m 2 http://127.0.0.1:8821/global/health")

    with subtest("first boot: each init script ran once, state has the promised modes"):
        assert lines("${stateDir}/pre-runs") == ["pre v1"], f"pre-runs: {lines('${stateDir}/pre-runs')}"
        assert lines("${stateDir}/post-runs") == ["post v1"], f"post-runs: {lines('${stateDir}/post-runs')}"
        mode = machine.succeed("stat -c '%a %U' ${stateDir}").strip()
        assert mode == "700 opencode-idem", f"stateDir: {mode}"
        cfg_mode = machine.succeed("stat -c '%a %U:%G' ${launcherDir}/opencode.json").strip()
        assert cfg_mode == "640 root:opencode-idem", f"opencode.json: {cfg_mode!r}"

    before = snapshot()

    with subtest("restarting the setup unit (teardown, then setup) changes nothing and reruns no script"):
        machine.succeed("systemctl restart opencode-idem-setup.service")
        machine.wait_for_unit("opencode-idem.service")
        after = snapshot()
        for k in before:
            assert before[k] == after[k], f"setup restart changed {k}:\n--- before\n{before[k]}\n--- after\n{after[k]}"
        assert lines("${stateDir}/pre-runs") == ["pre v1"], "pre script ran again without a change"
        assert lines("${stateDir}/post-runs") == ["post v1"], "post script ran again without a change"

    with subtest("reloading the setup unit (setup again, no teardown) changes nothing"):
        machine.succeed("systemctl reload opencode-idem-setup.service")
        after = snapshot()
        for k in before:
            assert before[k] == after[k], f"setup reload changed {k}:\n--- before\n{before[k]}\n--- after\n{after[k]}"
        assert lines("${stateDir}/pre-runs") == ["pre v1"], "pre script ran again on reload"
        machine.succeed("systemctl is-active opencode-idem.service")

    with subtest("running setup by hand twice more converges to the same state"):
        machine.succeed("opencode-launcher setup --config ${spec}")
        machine.succeed("opencode-launcher setup --config ${spec}")
        after = snapshot()
        for k in before:
            assert before[k] == after[k], f"manual setup changed {k}:\n--- before\n{before[k]}\n--- after\n{after[k]}"

    with subtest("a removed opencode.json is restored"):
        machine.succeed("rm ${launcherDir}/opencode.json")
        machine.succeed("systemctl reload opencode-idem-setup.service")
        after = snapshot()
        assert before["config"] == after["config"], f"opencode.json not restored:\n{after['config']}"

    with subtest("--rerun-init forces both scripts"):
        machine.succeed("opencode-launcher setup --rerun-init --config ${spec}")
        assert lines("${stateDir}/pre-runs") == ["pre v1", "pre v1"], f"pre-runs: {lines('${stateDir}/pre-runs')}"
        assert lines("${stateDir}/post-runs") == ["post v1", "post v1"], f"post-runs: {lines('${stateDir}/post-runs')}"

    with subtest("a changed script runs once; the unchanged one does not"):
        machine.succeed("/run/current-system/specialisation/pre-v2/bin/switch-to-configuration test")
        machine.wait_for_unit("opencode-idem.service")
        machine.wait_until_succeeds("curl -sf -m 2 http://127.0.0.1:8821/global/health")
        assert lines("${stateDir}/pre-runs") == ["pre v1", "pre v1", "pre v2"], f"pre-runs: {lines('${stateDir}/pre-runs')}"
        assert lines("${stateDir}/post-runs") == ["post v1", "post v1"], f"post-runs: {lines('${stateDir}/post-runs')}"
        machine.succeed("systemctl restart opencode-idem-setup.service")
        assert lines("${stateDir}/pre-runs")[-1] == "pre v2" and len(lines("${stateDir}/pre-runs")) == 3, "pre v2 ran twice"
  '';
}
