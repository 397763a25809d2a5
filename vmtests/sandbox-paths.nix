# Read-write, read-only and denied paths, and TCP bind ports, from inside an instance's
# sandbox. The denied files are world-readable, so that Landlock (not file modes) is what
# refuses them; the same operations succeed outside the sandbox.
{ pkgs, common }:
let
  probe = "${common.probe}/bin/probe";
  user = "opencode-paths";
in
pkgs.testers.runNixOSTest {
  name = "ocnix-sandbox-paths";

  nodes.machine =
    { ... }:
    {
      imports = [ common.baseModule ];
      services.opencode.instances.paths = {
        directory = "/srv/proj";
        listen.port = 8801;
        sandbox = {
          readWritePaths = [ "/srv/rw" ];
          readOnlyPaths = [ "/srv/ro" ];
          allowBindPorts = [ 7001 ];
        };
      };
      systemd.tmpfiles.rules = [
        "d /srv/proj 0750 ${user} ${user} -"
        "d /srv/rw 0770 ${user} ${user} -"
        # read-only for the instance by policy, although its modes would allow writing
        "d /srv/ro 0777 root root -"
        "f /srv/ro/readme 0666 root root - read-only-content"
        # denied by policy, although world-readable and world-writable
        "d /srv/secret 0777 root root -"
        "f /srv/secret/token 0666 root root - top-secret"
      ];
    };

  testScript = common.pythonHelpers + ''
    start_all()
    machine.wait_for_unit("opencode-paths.service")
    machine.wait_for_open_port(8801)
    health(machine, "127.0.0.1", 8801)

    with subtest("control: outside the sandbox the instance user may do all of it"):
        machine.succeed("runuser -u ${user} -- ${probe} read /srv/secret/token")
        machine.succeed("runuser -u ${user} -- ${probe} write /srv/ro/written-outside")

    with subtest("inside, the process is the instance user"):
        out = must_allow(machine, "paths", "${probe} whoami", "whoami")
        uid = machine.succeed("id -u ${user}").strip()
        assert f"ok {uid} " in out, f"sandboxed process is not {uid}: {out}"

    with subtest("read-write: directory, stateDir and readWritePaths"):
        must_allow(machine, "paths", "${probe} write /srv/proj/file", "write in directory")
        must_allow(machine, "paths", "${probe} write /var/lib/opencode/instance-state/paths/file", "write in stateDir")
        must_allow(machine, "paths", "${probe} write /srv/rw/file", "write in readWritePaths")

    with subtest("read-only: readable, not writable"):
        out = must_allow(machine, "paths", "${probe} read /srv/ro/readme", "read in readOnlyPaths")
        assert "read-only-content" in out, f"unexpected content: {out}"
        must_deny(machine, "paths", "${probe} write /srv/ro/readme", "write to a read-only file", "EACCES")
        must_deny(machine, "paths", "${probe} write /srv/ro/new", "create in a read-only dir", "EACCES")

    with subtest("denied: neither readable nor writable"):
        must_deny(machine, "paths", "${probe} read /srv/secret/token", "read outside the policy", "EACCES")
        must_deny(machine, "paths", "${probe} write /srv/secret/new", "write outside the policy", "EACCES")
        must_deny(machine, "paths", "${probe} read /root/.bash_history", "read /root")
        must_deny(machine, "paths", "${probe} write /var/tmp/escape", "write /var/tmp", "EACCES")
        must_deny(machine, "paths", "${probe} write /etc/escape", "write /etc")
        machine.fail("test -e /srv/secret/new")
        machine.fail("test -e /var/tmp/escape")

    with subtest("TCP bind: ephemeral and allowBindPorts yes, other fixed ports no"):
        must_allow(machine, "paths", "${probe} bind-tcp 127.0.0.1 0", "bind an ephemeral port")
        must_allow(machine, "paths", "${probe} bind-tcp 127.0.0.1 7001", "bind a port of allowBindPorts")
        must_deny(machine, "paths", "${probe} bind-tcp 127.0.0.1 7002", "bind a fixed port that is not allowed", "EACCES")

    with subtest("the unit's own view: systemd's layer alone also keeps /srv/secret read-only"):
        pid = machine.succeed("systemctl show -P MainPID opencode-paths.service").strip()
        machine.fail(f"nsenter -t {pid} -m -S $(id -u ${user}) -G $(id -g ${user}) -- ${probe} write /srv/secret/via-unit")
        machine.succeed(f"nsenter -t {pid} -m -S $(id -u ${user}) -G $(id -g ${user}) -- ${probe} write /srv/proj/via-unit")

    with subtest("the state directory is private to the instance"):
        mode = machine.succeed("stat -c '%a %U' /var/lib/opencode/instance-state/paths").strip()
        assert mode == "700 ${user}", f"stateDir mode/owner: {mode}"
  '';
}
