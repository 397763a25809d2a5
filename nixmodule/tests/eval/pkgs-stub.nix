# The few pkgs attributes the module touches at evaluation time. Derivations are stand-ins
# with a store-like outPath; builders return a path string that names their input, so tests
# can look into generated scripts (`scriptText`).
lib:
let
  drv = name: {
    type = "derivation";
    inherit name;
    pname = name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  builder = name: _: "/nix/store/00000000000000000000000000000000-${name}";
in
{
  inherit lib;
  system = "x86_64-linux";
  stdenv.hostPlatform.system = "x86_64-linux";
  opencode = drv "opencode" // {
    version = "1.18.33";
  };
  opencode-launcher = drv "opencode-launcher";
  postgresql = drv "postgresql";
  git = drv "git";
  jq = drv "jq";
  bash = drv "bash";
  coreutils = drv "coreutils";
  curl = drv "curl";
  diffutils = drv "diffutils";
  # The default toolset (options.nix).
  ripgrep = drv "ripgrep";
  findutils = drv "findutils";
  gnugrep = drv "gnugrep";
  gnused = drv "gnused";
  gawk = drv "gawk";
  bashInteractive = drv "bashInteractive";
  gnutar = drv "gnutar";
  gzip = drv "gzip";
  which = drv "which";
  # What a current NixOS has (the module's PrivatePIDs= needs 257).
  systemd = drv "systemd" // {
    version = "258.2";
  };
  writeText = builder;
  writeTextFile = a: builder a.name a;
  # The script's text is appended to its stand-in store path, so that a test can look for
  # it in the unit setting that runs the script (`lib.hasInfix` on ExecStartPre and such).
  writeShellScript = name: text: "/nix/store/00000000000000000000000000000000-${name}#script:${text}";
  writeShellScriptBin = builder;
  writeScript = builder;
  runCommand = name: env: script: drv name;
  runCommandLocal = name: env: script: drv name;
  formats.json = _: {
    type = lib.types.attrsOf lib.types.anything;
    generate = name: value: builder name value;
  };
}
