# Two isolated instances on one host: each serves its own port, neither can read the other's
# project or state, nor reach the other's server; a third, disabled instance generates nothing.
{ pkgs, common }:
let
  probe = "${common.probe}/bin/probe";
  instance = name: port: {
    directory = "/srv/${name}";
    listen.port = port;
    networkIsolation = {
      enable = true;
      # Something harmless that is neither the host nor the other instance.
      outboundAllowCidrs = [ "192.0.2.0/24" ];
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "ocnix-multi-instance";

  nodes.machine =
    { lib, ... }:
    {
      imports = [ common.baseModule ];
      services.opencode.instances = {
        alpha = instance "alpha" 8811;
        beta = instance "beta" 8812;
        gamma = instance "gamma" 8813 // {
          enable = false;
        };
      };
      systemd.tmpfiles.rules = lib.concatMap (n: [
        # world-readable on purpose: Landlock, not file modes, must keep the neighbour out
        "d /srv/${n} 0755 opencode-${n} opencode-${n} -"
        "f /srv/${n}/notes 0644 opencode-${n} opencode-${n} - notes-of-${n}"
      ]) [ "alpha" "beta" ];
    };

  testScript = common.pythonHelpers + ''
    start_all()
    for name, port in [("alpha", 8811), ("beta", 8812)]:
        machine.wait_for_unit(f"opencode-{name}.service")
        machine.wait_until_succeeds(f"curl -sf -m 2 http://127.0.0.1:{port}/global/health")

    with subtest("each instance has its own user, state and namespace"):
        ua = machine.succeed("id -u opencode-alpha").strip()
        ub = machine.succeed("id -u opencode-beta").strip()
        assert ua != ub, f"alpha and beta share uid {ua}"
        na = machine.succeed("readlink /proc/$(systemctl show -P MainPID opencode-alpha.service)/ns/net").strip()
        nb = machine.succeed("readlink /proc/$(systemctl show -P MainPID opencode-beta.service)/ns/net").strip()
        assert na != nb, f"alpha and beta share the network namespace {na}"

    with subtest("an instance reads its own project but not its neighbour's"):
        out = must_allow(machine, "alpha", "${probe} read /srv/alpha/notes", "alpha reads its project")
        assert "notes-of-alpha" in out, f"unexpected content: {out}"
        machine.succeed("runuser -u opencode-alpha -- ${probe} read /srv/beta/notes")  # modes allow it
        must_deny(machine, "alpha", "${probe} read /srv/beta/notes", "alpha reads beta's project", "EACCES")
        must_deny(machine, "beta", "${probe} write /srv/alpha/notes", "beta writes alpha's project", "EACCES")
        must_deny(machine, "alpha", "${probe} read /var/lib/opencode/launcher/beta/opencode.json", "alpha reads beta's config")

    with subtest("an instance cannot reach its neighbour's server"):
        # Inside alpha's namespace 127.0.0.1 is alpha's own loopback: nothing listens on 8812.
        must_deny(machine, "alpha", "${probe} connect-tcp 127.0.0.1 8812", "alpha to beta's port on loopback")
        # The host's addresses are not in alpha's CIDRs.
        host_ip = machine.succeed("ip -4 -o addr show dev eth1 | awk '{print $4}' | cut -d/ -f1").strip()
        must_deny(machine, "alpha", f"${probe} connect-tcp {host_ip} 8812", "alpha to beta's port via the host")
        must_deny(machine, "beta", "${probe} connect-tcp 127.0.0.1 8811", "beta to alpha's port on loopback")
        # The host itself reaches both.
        health(machine, "127.0.0.1", 8811)
        health(machine, "127.0.0.1", 8812)

    with subtest("the disabled instance generates nothing"):
        machine.fail("systemctl cat opencode-gamma.service")
        machine.fail("systemctl cat opencode-gamma-setup.service")
        machine.fail("systemctl cat opencode-gamma-proxy.socket")
        machine.fail("id opencode-gamma")
        machine.fail("ip netns list | grep -q opencode-gamma")
        machine.fail("curl -sf -m 2 http://127.0.0.1:8813/global/health")
  '';
}
