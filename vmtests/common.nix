# Shared pieces of the ocnix VM tests: a fake opencode server, a probe for "can the sandbox
# do X?", a base NixOS module and Python helpers for the test scripts.
{ pkgs, ocnixModule }:
let
  python = "${pkgs.python3}/bin/python3";
in
rec {
  # Stands in for opencode: `opencode serve --hostname H --port P [...]` answers
  # GET /global/health like opencode 1.18 does, exits 143 on SIGTERM, and appends "server"
  # to $OCNIX_TEST_ORDER_FILE at start when that is set (the hooks test reads it).
  fakeOpencode = pkgs.writeTextFile {
    name = "fake-opencode";
    destination = "/bin/opencode";
    executable = true;
    text = ''
      #!${python}
      import http.server, json, os, signal, socket, sys

      args = sys.argv[1:]
      if not args or args[0] != "serve":
          print("fake opencode: only `serve` is implemented", file=sys.stderr)
          sys.exit(2)
      host, port = "127.0.0.1", 4096
      i = 1
      while i < len(args):
          if args[i] == "--hostname":
              host = args[i + 1]; i += 2
          elif args[i] == "--port":
              port = int(args[i + 1]); i += 2
          else:
              i += 1

      order = os.environ.get("OCNIX_TEST_ORDER_FILE")
      if order:
          with open(order, "a") as f:
              f.write("server\n")

      class Handler(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              if self.path == "/global/health":
                  body = json.dumps({"healthy": True, "version": "fake"}).encode()
              elif self.path == "/whoami":
                  body = json.dumps({"uid": os.getuid(), "cwd": os.getcwd()}).encode()
              else:
                  self.send_error(404)
                  return
              self.send_response(200)
              self.send_header("Content-Type", "application/json")
              self.send_header("Content-Length", str(len(body)))
              self.end_headers()
              self.wfile.write(body)

      class Server(http.server.ThreadingHTTPServer):
          address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

      signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
      srv = Server((host, port), Handler)
      print(f"opencode server listening on http://{host}:{port}", flush=True)
      srv.serve_forever()
    '';
  };

  # `probe OP ARGS`: one operation, "ok …" and exit 0, or "denied errno=N (NAME)" and exit 1.
  #   read PATH | write PATH | connect-unix PATH | connect-tcp HOST PORT | bind-tcp HOST PORT
  #   | whoami
  probe = pkgs.writeTextFile {
    name = "ocnix-probe";
    destination = "/bin/probe";
    executable = true;
    text = ''
      #!${python}
      import errno, os, socket, sys

      op, args = sys.argv[1], sys.argv[2:]
      try:
          if op == "read":
              with open(args[0]) as f:
                  print("ok", f.read().strip())
          elif op == "write":
              with open(args[0], "a") as f:
                  f.write("probe\n")
              print("ok wrote", args[0])
          elif op == "connect-unix":
              s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
              s.connect(args[0])
              print("ok connected", args[0])
          elif op == "connect-tcp":
              fam = socket.AF_INET6 if ":" in args[0] else socket.AF_INET
              s = socket.socket(fam, socket.SOCK_STREAM)
              s.settimeout(5)
              s.connect((args[0], int(args[1])))
              print("ok connected", args[0], args[1])
          elif op == "bind-tcp":
              s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
              s.bind((args[0], int(args[1])))
              print("ok bound", s.getsockname())
          elif op == "whoami":
              print("ok", os.getuid(), os.getgid(), os.getcwd())
          else:
              print("probe: unknown op", op, file=sys.stderr)
              sys.exit(2)
      except socket.timeout:
          print("denied timeout")
          sys.exit(1)
      except OSError as e:
          print(f"denied errno={e.errno} ({errno.errorcode.get(e.errno, '?')})")
          sys.exit(1)
    '';
  };

  # Imported by every test machine.
  baseModule =
    { ... }:
    {
      imports = [ ocnixModule ];
      services.opencode = {
        enable = true;
        package = pkgs.lib.mkDefault fakeOpencode;
      };
      networking.nftables.enable = true;
      environment.systemPackages = [
        probe
        pkgs.curl
        pkgs.jq
      ];
      virtualisation.memorySize = pkgs.lib.mkDefault 1024;
    };

  # Python helpers, prepended to every testScript.
  pythonHelpers = ''
    def spec(name):
        return f"/etc/ocnix/instances/{name}.json"

    def inside(name, cmd):
        """cmd run as root through the launcher, which drops to opencode-<name> and applies
        exactly the server's sandbox (Landlock, seccomp, unix-socket gate, netns). must_*
        capture stderr too, where the launcher logs denials."""
        return f"opencode-launcher run --config {spec(name)} -- {cmd}"

    def must_deny(machine, name, cmd, what, errno_name=None):
        status, out = machine.execute(inside(name, cmd) + " 2>&1")
        assert status != 0, f"{what}: expected a denial inside {name}, but it succeeded: {out}"
        if errno_name is not None:
            assert errno_name in out, f"{what}: expected {errno_name} inside {name}, got: {out}"
        return out

    def must_allow(machine, name, cmd, what):
        status, out = machine.execute(inside(name, cmd) + " 2>&1")
        assert status == 0, f"{what}: expected success inside {name}, got status {status}: {out}"
        return out

    def health(machine, address, port):
        out = machine.succeed(f"curl -sf -m 5 http://{address}:{port}/global/health")
        assert '"healthy": true' in out or '"healthy":true' in out, f"health at {address}:{port}: {out}"
  '';
}
