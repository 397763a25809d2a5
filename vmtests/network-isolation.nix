# An isolated instance reaches an allowed address on a fake "internet" node and nothing else
# (another address there, the internet node itself, the host's own services); blocked
# attempts are logged with `opencode-<name>-blocked: `; the server listens inside its
# namespace and is published on the host by the socket proxy; a flush of the host ruleset
# does not open the filter, and the nftables reload repairs the host side; teardown removes
# the namespace and keeps the state.
{ pkgs, common }:
let
  probe = "${common.probe}/bin/probe";
  curl = "${pkgs.curl}/bin/curl";
  cat = "${pkgs.coreutils}/bin/cat";
  webroot = pkgs.writeTextDir "index.html" "hello-from-internet\n";
in
pkgs.testers.runNixOSTest {
  name = "ocnix-network-isolation";

  nodes.internet =
    { ... }:
    {
      # Two "internet" addresses besides the node's own: 10.10.0.1 is allowed, 10.20.0.1 not.
      networking.localCommands = ''
        ip addr add 10.10.0.1/32 dev lo
        ip addr add 10.20.0.1/32 dev lo
      '';
      networking.firewall.allowedTCPPorts = [ 80 ];
      systemd.services.fake-upstream = {
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig.ExecStart = "${pkgs.python3}/bin/python3 -m http.server 80 --bind 0.0.0.0 --directory ${webroot}";
      };
      environment.systemPackages = [ pkgs.curl ];
    };

  nodes.machine =
    { nodes, ... }:
    {
      imports = [ common.baseModule ];
      networking.interfaces.eth1.ipv4.routes = [
        {
          address = "10.10.0.0";
          prefixLength = 16;
          via = nodes.internet.networking.primaryIPAddress;
        }
        {
          address = "10.20.0.0";
          prefixLength = 16;
          via = nodes.internet.networking.primaryIPAddress;
        }
      ];
      # A service of the host itself, open in the host firewall: the instance must still not
      # reach it, because no CIDR allows the host.
      networking.firewall.allowedTCPPorts = [ 9999 ];
      systemd.services.host-only = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.python3}/bin/python3 -m http.server 9999 --bind 0.0.0.0 --directory ${webroot}";
      };

      services.opencode.instances.restricted = {
        directory = "/srv/restricted";
        listen = {
          address = "0.0.0.0";
          port = 8789;
        };
        openFirewall = true;
        path = [ pkgs.curl ];
        networkIsolation = {
          enable = true;
          outboundAllowCidrs = [ "10.10.0.0/16" ];
          nameservers = [ "10.10.0.1" ];
        };
      };
      systemd.tmpfiles.rules = [ "d /srv/restricted 0750 opencode-restricted opencode-restricted -" ];
    };

  testScript =
    { nodes, ... }:
    common.pythonHelpers
    + ''
      internet_ip = "${nodes.internet.networking.primaryIPAddress}"
      machine_ip = "${nodes.machine.networking.primaryIPAddress}"

      start_all()
      internet.wait_for_unit("fake-upstream.service")
      internet.wait_for_open_port(80)
      machine.wait_for_unit("host-only.service")
      machine.wait_for_open_port(9999)

      with subtest("control: the host itself reaches both upstream addresses"):
          machine.wait_until_succeeds("${curl} -sf -m 5 http://10.10.0.1/ | grep -q hello-from-internet")
          machine.succeed("${curl} -sf -m 5 http://10.20.0.1/ | grep -q hello-from-internet")

      with subtest("setup created the namespace and the server listens inside it"):
          machine.wait_for_unit("opencode-restricted-setup.service")
          machine.wait_for_unit("opencode-restricted.service")
          machine.succeed("ip netns list | grep -q '^opencode-restricted'")
          machine.wait_until_succeeds("ip netns exec opencode-restricted ss -Hltn 'sport = :8789' | grep -q LISTEN")
          netns = machine.succeed("readlink /proc/$(systemctl show -P MainPID opencode-restricted.service)/ns/net").strip()
          host_netns = machine.succeed("readlink /proc/1/ns/net").strip()
          assert netns != host_netns, f"the server runs in the host network namespace ({netns})"

      with subtest("the port is published on the host at listen.address:listen.port"):
          machine.wait_for_unit("opencode-restricted-proxy.socket")
          machine.wait_until_succeeds("${curl} -sf -m 2 http://127.0.0.1:8789/global/health")
          health(machine, "127.0.0.1", 8789)
          health(internet, "machine", 8789)
          machine.succeed("systemctl is-active opencode-restricted-proxy.service")

      with subtest("an allowed CIDR connects from inside"):
          out = must_allow(machine, "restricted", "${probe} connect-tcp 10.10.0.1 80", "connect to the allowed upstream")
          assert "ok connected" in out, f"probe output: {out}"
          out = must_allow(machine, "restricted", "${curl} -sf -m 5 http://10.10.0.1/", "HTTP to the allowed upstream")
          assert "hello-from-internet" in out, f"unexpected body from 10.10.0.1: {out}"

      with subtest("everything else is blocked and logged"):
          must_deny(machine, "restricted", "${probe} connect-tcp 10.20.0.1 80", "connect to a blocked upstream")
          must_deny(machine, "restricted", f"${probe} connect-tcp {internet_ip} 80", "connect to the internet node's own address")
          must_deny(machine, "restricted", f"${probe} connect-tcp {machine_ip} 9999", "connect to a service of the host")
          machine.wait_until_succeeds("dmesg | grep 'opencode-restricted-blocked: ' | grep -q 'DST=10.20.0.1'")
          log = machine.succeed("dmesg | grep 'opencode-restricted-blocked: ' || true")
          assert "DST=10.10.0.1 " not in log, f"allowed traffic was logged as blocked: {log}"

      with subtest("DNS inside uses the configured resolvers"):
          out = must_allow(machine, "restricted", "${cat} /etc/resolv.conf", "read resolv.conf inside")
          assert "nameserver 10.10.0.1" in out, f"resolv.conf inside the launcher's namespace: {out}"
          pid = machine.succeed("systemctl show -P MainPID opencode-restricted.service").strip()
          out = machine.succeed(f"nsenter -t {pid} -m ${cat} /etc/resolv.conf")
          assert "nameserver 10.10.0.1" in out, f"resolv.conf seen by the server unit: {out}"

      with subtest("flushing the host ruleset does not open the filter; the nftables reload repairs egress"):
          machine.succeed("nft flush ruleset")
          must_deny(machine, "restricted", "${probe} connect-tcp 10.20.0.1 80", "blocked upstream after a host flush")
          machine.succeed("systemctl reload nftables.service")
          machine.wait_until_succeeds(inside("restricted", "${probe} connect-tcp 10.10.0.1 80"), timeout=60)
          must_deny(machine, "restricted", "${probe} connect-tcp 10.20.0.1 80", "blocked upstream after the reload")
          health(machine, "127.0.0.1", 8789)

      with subtest("teardown removes the namespace and keeps the state"):
          machine.succeed("systemctl stop opencode-restricted-setup.service")
          machine.fail("systemctl is-active opencode-restricted.service")
          machine.fail("ip netns list | grep -q '^opencode-restricted'")
          machine.succeed("test -d /var/lib/opencode/instance-state/restricted")
          machine.succeed("systemctl start opencode-restricted.service")
          machine.wait_until_succeeds("${curl} -sf -m 2 http://127.0.0.1:8789/global/health")
    '';
}
