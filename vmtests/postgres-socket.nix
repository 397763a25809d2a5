# PostgreSQL over its unix socket, with peer authentication, from INSIDE an instance's
# sandbox; a socket that is not allowed (the nix daemon's) is refused with EACCES; an instance
# without the allowance cannot reach PostgreSQL; a disabled instance generates nothing.
# This one runs the real opencode (services.opencode.package's default, pkgs.opencode).
{ pkgs, common }:
let
  probe = "${common.probe}/bin/probe";
  psql = "${pkgs.postgresql}/bin/psql";
in
pkgs.testers.runNixOSTest {
  name = "ocnix-postgres-socket";

  nodes.machine =
    { lib, ... }:
    {
      imports = [ common.baseModule ];
      virtualisation.memorySize = 2048;

      services.postgresql = {
        enable = true;
        package = pkgs.postgresql;
        # Peer authentication: the database role is the instance's user.
        ensureDatabases = [ "opencode-db" ];
        ensureUsers = [
          {
            name = "opencode-db";
            ensureDBOwnership = true;
          }
        ];
      };

      services.opencode = {
        package = lib.mkForce pkgs.opencode;
        instances = {
          db = {
            directory = "/srv/db";
            listen.port = 8788;
            path = [ pkgs.postgresql ];
            sandbox.unixSockets.allow = [ "/run/postgresql/.s.PGSQL.5432" ];
          };
          nodb = {
            directory = "/srv/nodb";
            listen.port = 8789;
            path = [ pkgs.postgresql ];
          };
          disabled = {
            enable = false;
            directory = "/srv/disabled";
            listen.port = 8790;
          };
        };
      };
      systemd.services.opencode-db.after = [ "postgresql.service" ];
      systemd.tmpfiles.rules = [
        "d /srv/db 0750 opencode-db opencode-db -"
        "d /srv/nodb 0750 opencode-nodb opencode-nodb -"
      ];
    };

  testScript = common.pythonHelpers + ''
    start_all()
    machine.wait_for_unit("postgresql.service")
    machine.wait_until_succeeds("runuser -u postgres -- ${psql} -tAc \"select 1 from pg_roles where rolname='opencode-db'\" | grep -q 1")

    with subtest("the real opencode server runs under the launcher and answers"):
        machine.wait_for_unit("opencode-db.service")
        machine.wait_for_open_port(8788)
        machine.wait_until_succeeds("curl -sf -m 2 http://127.0.0.1:8788/global/health")
        health(machine, "127.0.0.1", 8788)
        user = machine.succeed("systemctl show -P User opencode-db.service").strip()
        assert user == "opencode-db", f"main unit runs as {user!r}, expected opencode-db"
        machine.fail("pgrep -u root -f 'serve --hostname 127.0.0.1 --port 8788'")

    with subtest("psql works from inside the sandbox, authenticated by peer as the instance user"):
        out = must_allow(machine, "db", "${psql} -h /run/postgresql -d opencode-db -tAc 'select current_user'", "psql over the allowed socket")
        assert out.strip().splitlines()[-1] == "opencode-db", f"peer auth saw the wrong user: {out}"
        out = must_allow(machine, "db", "${probe} connect-unix /run/postgresql/.s.PGSQL.5432", "raw connect to the allowed socket")
        assert "ok connected" in out, f"probe output: {out}"

    with subtest("a socket that is not allowed is refused from inside, though it works outside"):
        machine.succeed("${probe} connect-unix /nix/var/nix/daemon-socket/socket")
        out = must_deny(machine, "db", "${probe} connect-unix /nix/var/nix/daemon-socket/socket", "nix-daemon socket", "EACCES")
        assert "/nix/var/nix/daemon-socket/socket" in out, f"the launcher did not log the denied path: {out}"

    with subtest("an instance without the allowance cannot reach PostgreSQL"):
        must_deny(machine, "nodb", "${probe} connect-unix /run/postgresql/.s.PGSQL.5432", "postgres socket from nodb", "EACCES")
        status, out = machine.execute(inside("nodb", "${psql} -h /run/postgresql -d opencode-db -tAc 'select 1'"))
        assert status != 0, f"psql from nodb must fail, got: {out}"

    with subtest("the systemd layer is on the main unit"):
        for prop, want in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes")]:
            got = machine.succeed(f"systemctl show -P {prop} opencode-db.service").strip()
            assert got == want, f"opencode-db.service {prop}={got!r}, expected {want!r}"
        caps = machine.succeed("systemctl show -P CapabilityBoundingSet opencode-db.service").strip()
        assert caps == "", f"opencode-db.service keeps capabilities: {caps!r}"

    with subtest("a disabled instance generates no unit and no user"):
        machine.fail("systemctl cat opencode-disabled.service")
        machine.fail("systemctl list-unit-files | grep opencode-disabled")
        machine.fail("id opencode-disabled")
        machine.fail("test -e /etc/ocnix/instances/disabled.json")
  '';
}
