# The shell scripts that the module puts into units, rendered through the evaluation harness
# for one instance, so that ./scripts-test.sh can run them. Store paths are the stand-ins'
# (/nix/store/000…-<name>/…); the test maps them to real or fake tools.
{
  lib,
  name,
  port,
  directory,
}:
let
  r = import ./eval/eval.nix {
    inherit lib;
    configuration = {
      services.opencode = {
        enable = true;
        instances.${name} = {
          inherit directory;
          createDirectory = false;
          listen.port = port;
          networkIsolation = {
            enable = true;
            outboundAllowCidrs = [ "10.0.0.0/8" ];
          };
        };
      };
      networking.nftables.enable = true;
    };
  };
  sc = unit: r.config.systemd.services.${unit}.serviceConfig;
  # "/nix/store/…-x#script:TEXT" (see eval/pkgs-stub.nix) -> TEXT
  text =
    s:
    let
      m = builtins.match "[-+]?[^#]*#script:(.*)" s;
    in
    if m == null then throw "not a stand-in script: ${s}" else builtins.head m;
in
{
  checkDirectory = text (builtins.head (sc "opencode-${name}-setup").ExecStartPre);
  setupReload = text (sc "opencode-${name}-setup").ExecReload;
  waitReady = text (builtins.head (sc "opencode-${name}").ExecStartPost);
}
