# The pkgs attributes nixmodule/ touches at evaluation time. Packages are stand-ins with a
# store-like outPath ("/nix/store/000…-<name>") that render.sh maps to the container's own
# binaries (../store-paths.tsv). Text builders write real files with builtins.toFile
# (nix-instantiate --read-write-mode), so render.sh can copy their content into the
# container: the readiness check and the init scripts run exactly as the module wrote them.
lib:
let
  store = "/nix/store/00000000000000000000000000000000";
  pkg = name: {
    type = "derivation";
    inherit name;
    pname = name;
    outPath = "${store}-${name}";
    meta.mainProgram = name;
  };
  shell = "${store}-bash/bin/bash";
  file = name: text: builtins.toFile name text;
  unsupported =
    what: _:
    throw "systemdtests/nix/pkgs-stub.nix: the module uses pkgs.${what}, which the systemd tier cannot render yet; add it to pkgs-stub.nix and store-paths.tsv";
  # Everyday tools a unit's scripts may call; each maps to /usr in the container.
  tools = [
    "bash"
    "coreutils"
    "curl"
    "diffutils"
    "findutils"
    "gawk"
    "git"
    "gnugrep"
    "gnused"
    "gnutar"
    "gzip"
    "iproute2"
    "jq"
    "nftables"
    "procps"
    "ripgrep"
    "systemd"
    "util-linux"
  ];
in
lib.genAttrs tools pkg
// {
  inherit lib;
  system = "x86_64-linux";
  stdenv.hostPlatform = {
    system = "x86_64-linux";
    isLinux = true;
  };
  runtimeShell = shell;
  opencode = pkg "opencode";
  postgresql = pkg "postgresql";
  bashInteractive = pkg "bash";
  writeText = file;
  writeTextFile =
    a:
    if (a.destination or "") != "" then
      unsupported "writeTextFile with a destination" a
    else
      file a.name ((lib.optionalString (a.executable or false) "") + a.text);
  writeShellScript = name: text: file name "#!${shell}\n${text}";
  writeScript = file;
  writeShellScriptBin = unsupported "writeShellScriptBin";
  writeShellApplication = unsupported "writeShellApplication";
  # The only runCommand in the module checks the spec with the launcher at build time; here
  # the spec is written from config.services.opencode.specs and checked in the container.
  runCommand = name: _env: _script: pkg name;
  runCommandLocal = name: _env: _script: pkg name;
  formats.json = _: {
    type = lib.types.attrsOf lib.types.anything;
    generate = name: value: file name (builtins.toJSON value);
  };
}
