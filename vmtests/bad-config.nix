# Bad configurations fail before anything runs. No VM:
# - a CIDR with host bits set parses in Nix, so no assertion fires, but the build-time
#   `opencode-launcher check` of the instance spec fails the build with the launcher's
#   message (testers.testBuildFailure);
# - the module's assertions catch the rest at evaluation, each message naming the option.
{ pkgs, ocnixModule }:
let
  inherit (pkgs) lib;

  evalWith =
    instances:
    (pkgs.nixos [
      ocnixModule
      {
        services.opencode = {
          enable = true;
          inherit instances;
        };
        networking.nftables.enable = true;
        # Enough of a machine for evaluation; nothing here is built except the spec check.
        boot.loader.grub.enable = false;
        fileSystems."/".device = "/dev/null";
        system.stateVersion = lib.trivial.release;
      }
    ]).config;

  ours = config: lib.filter (lib.hasPrefix "`services.opencode") (
    map (a: a.message) (lib.filter (a: !a.assertion) config.assertions)
  );

  # 1. Passes every Nix assertion, fails the launcher's check at build time.
  hostBits = evalWith {
    hostbits = {
      directory = "/srv/hostbits";
      networkIsolation = {
        enable = true;
        outboundAllowCidrs = [ "10.10.1.0/16" ];
      };
    };
  };
  hostBitsFailure = pkgs.testers.testBuildFailure hostBits.services.opencode.specFiles.hostbits;

  # 2. Caught by the module's assertions.
  bad = evalWith {
    cidr = {
      directory = "/srv/cidr";
      listen.port = 9001;
      networkIsolation = {
        enable = true;
        outboundAllowCidrs = [
          "10.10.0.0/33"
          "not-a-cidr"
        ];
      };
    };
    relative = {
      directory = "srv/relative";
      listen.port = 9002;
    };
    same = {
      directory = "/srv/same";
      stateDir = "/srv/same";
      listen.port = 9003;
    };
    dup-a = {
      directory = "/srv/dup-a";
      listen.port = 9004;
    };
    dup-b = {
      directory = "/srv/dup-b";
      listen.port = 9004;
    };
    "Bad.Name" = {
      directory = "/srv/bad-name";
      listen.port = 9005;
    };
    off = {
      enable = false;
      directory = "relative-but-disabled";
      listen.port = 9004;
    };
  };
  messages = pkgs.writeText "ocnix-bad-config-messages" (lib.concatStringsSep "\n" (ours bad));
  expected = [
    "`services.opencode.instances.cidr.networkIsolation.outboundAllowCidrs`: not a CIDR"
    "\"10.10.0.0/33\""
    "\"not-a-cidr\""
    "`services.opencode.instances.relative.directory`: must be an absolute path"
    "`services.opencode.instances.same.stateDir`: must differ from `directory`"
    "`services.opencode.instances.dup-a.listen.port`: port 9004 is also used by the enabled instance(s) \"dup-b\""
    "`services.opencode.instances.dup-b.listen.port`: port 9004 is also used by the enabled instance(s) \"dup-a\""
    "`services.opencode.instances.Bad.Name`: the instance name \"Bad.Name\" does not make a valid user and unit name"
  ];
in
assert lib.assertMsg (ours hostBits == [ ]) "bad-config: the host-bits CIDR must pass the Nix assertions, got: ${toString (ours hostBits)}";
pkgs.runCommand "ocnix-bad-config" { inherit messages; } ''
  set -eu
  log=${hostBitsFailure}/testBuildFailure.log
  code=$(cat ${hostBitsFailure}/testBuildFailure.exit)
  echo "spec check failed with exit code $code (expected non-zero):"
  cat "$log"
  grep -qF 'networkIsolation.outboundAllowCidrs' "$log" || { echo "FAIL: the build log does not name the key"; exit 1; }
  grep -qF '10.10.1.0/16' "$log" || { echo "FAIL: the build log does not name the bad CIDR"; exit 1; }

  echo "assertion messages:"
  cat "$messages"
  ${lib.concatMapStringsSep "\n" (e: ''
    grep -qF ${lib.escapeShellArg e} "$messages" || { echo "FAIL: missing assertion message: "${lib.escapeShellArg e}; exit 1; }
  '') expected}
  if grep -q 'instances.off' "$messages"; then echo "FAIL: a disabled instance was checked"; exit 1; fi
  touch $out
''
