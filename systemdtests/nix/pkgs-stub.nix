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
  runCommand =
    name: _env: script:
    let
      copied = builtins.match ".*\ncp (/nix/store/[^ \n]+) [$]out\n?.*" ("\n" + script);
    in
    if copied != null then builtins.head copied else pkg name;
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
    "which"
  ];
in
lib.genAttrs tools pkg
// {
  # What the container runs (Debian 12): the module leaves out PrivatePIDs= (257).
  systemd = pkg "systemd" // {
    version = "252";
  };
  inherit lib;
  system = "x86_64-linux";
  stdenv.hostPlatform = {
    system = "x86_64-linux";
    isLinux = true;
  };
  runtimeShell = shell;
  opencode = pkg "opencode" // {
    version = "1.18.33"; # what the container runs (/opt/ocnix/opencode-bin)
  };
  postgresql = pkg "postgresql";
  bashInteractive = pkg "bash";
  writeText = file;
  writeTextFile =
    a:
    if (a.destination or "") != "" then
      unsupported "writeTextFile with a destination" a
    else
      file a.name a.text; # the test installs every such file executable
  writeShellScript = name: text: file name "#!${shell}\n${text}";
  writeScript = file;
  writeShellScriptBin = unsupported "writeShellScriptBin";
  writeShellApplication = unsupported "writeShellApplication";
  # The module's runCommands check a spec with the launcher at build time and copy it to
  # $out: here their output is the copied file itself (the launcher checks it in the
  # container). Any other runCommand is an opaque stand-in, which store-paths.tsv must map.
  inherit runCommand;
  runCommandLocal = runCommand;
  formats.json = _: {
    type = lib.types.attrsOf lib.types.anything;
    generate = name: value: file name (builtins.toJSON value);
  };
}
