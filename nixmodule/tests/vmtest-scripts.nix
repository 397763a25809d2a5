# The Python test scripts of ../../vmtests, rendered with a builtins-only stand-in for pkgs
# (store paths are fake), so that CI can at least compile them (`python3 -m py_compile`):
#   nix-instantiate --eval --strict --json nixmodule/tests/vmtest-scripts.nix
# Node configurations are not evaluated here; that needs nixpkgs (see docs/nixos.md).
let
  fake = name: "/nix/store/00000000000000000000000000000000-${name}";
  drv = name: {
    type = "derivation";
    inherit name;
    outPath = fake name;
    interpreter = "${fake name}/bin/${name}";
  };
  pkgs = {
    lib = throw "vmtest-scripts.nix: node modules are not evaluated here";
    python3 = drv "python3";
    curl = drv "curl";
    coreutils = drv "coreutils";
    postgresql = drv "postgresql";
    opencode = drv "opencode";
    jq = drv "jq";
    writeTextFile = a: fake a.name;
    writeTextDir = name: _: fake name;
    writeShellScript = name: _: fake name;
    testers.runNixOSTest = t: t;
  };
  node = ip: { networking.primaryIPAddress = ip; };
  nodes = {
    machine = node "192.168.1.2";
    internet = node "192.168.1.1";
  };
  common = import ../../vmtests/common.nix {
    inherit pkgs;
    ocnixModule = { };
  };
  script =
    file:
    let
      t = import file { inherit pkgs common; };
    in
    if builtins.isFunction t.testScript then t.testScript { inherit nodes; } else t.testScript;
in
builtins.listToAttrs (
  map
    (name: {
      inherit name;
      value = script (../../vmtests + "/${name}.nix");
    })
    [
      "postgres-socket"
      "network-isolation"
      "sandbox-paths"
      "multi-instance"
      "setup-idempotence"
      "hooks"
    ]
)
