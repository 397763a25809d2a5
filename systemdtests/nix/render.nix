# Renders the systemd units that nixmodule/ generates for one NixOS configuration into
# unit-file text, the way nixpkgs' nixos/lib/systemd-lib.nix does (serviceToUnit,
# socketToUnit, attrsToSection), plus what the units need around them: the instance specs,
# sysusers, tmpfiles and sysctl lines. Store paths stay in the output; render.sh maps them.
#
#   nix-instantiate --eval --strict --json --read-write-mode render.nix \
#     --arg lib 'import NIXPKGS_LIB/lib' --arg configuration ../fixtures/X.nix
{
  lib,
  configuration,
  module ? ../../nixmodule/default.nix,
}:
let
  pkgs = import ./pkgs-stub.nix lib;
  # The flake sets launcherPackage; here it is a stand-in like every other package.
  launcherStub =
    { options, ... }:
    {
      config = lib.optionalAttrs (options.services.opencode or { } ? launcherPackage) {
        services.opencode.launcherPackage = lib.mkDefault {
          type = "derivation";
          name = "opencode-launcher";
          pname = "opencode-launcher";
          outPath = "/nix/store/00000000000000000000000000000000-opencode-launcher";
          meta.mainProgram = "opencode-launcher";
        };
      };
    };
  eval = lib.evalModules {
    specialArgs = {
      inherit pkgs;
      modulesPath = "/nonexistent";
    };
    modules = [
      ./stubs.nix
      module
      configuration
      launcherStub
      { _module.args = { inherit pkgs; }; }
    ];
  };
  cfg = eval.config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

  ours = lib.filterAttrs (n: u: lib.hasPrefix "opencode" n && u.enable);

  # --- nixpkgs systemd-lib ------------------------------------------------------------------
  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  attrsToSection =
    as:
    lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          name: value: map (x: "${name}=${toOption x}\n") (if lib.isList value then value else [ value ])
        ) as
      )
    );
  makeJobScript =
    name: text: builtins.toFile "unit-script-${name}" "#!${pkgs.runtimeShell} -e\n${text}";

  # The options a unit may use; anything else is refused rather than silently dropped.
  known = [
    "enable"
    "description"
    "documentation"
    "wantedBy"
    "requiredBy"
    "requires"
    "wants"
    "upholds"
    "after"
    "before"
    "bindsTo"
    "partOf"
    "conflicts"
    "requisite"
    "onFailure"
    "onSuccess"
    "startLimitBurst"
    "startLimitIntervalSec"
    "path"
    "environment"
    "script"
    "preStart"
    "postStart"
    "reload"
    "preStop"
    "postStop"
    "restartTriggers"
    "reloadTriggers"
    "restartIfChanged"
    "reloadIfChanged"
    "stopIfChanged"
    "listenStreams"
    "unitConfig"
    "serviceConfig"
    "socketConfig"
  ];
  checkKnown =
    file: u:
    let
      unknown = lib.subtractLists known (builtins.attrNames u);
    in
    if unknown == [ ] then
      u
    else
      throw "systemdtests/nix/render.nix: ${file} uses ${lib.concatStringsSep ", " unknown}, which the renderer does not know; teach render.nix to render it";

  # systemd-unit-options.nix: the list options become space-separated [Unit] settings.
  unitSection =
    u:
    let
      list = key: opt: lib.optionalAttrs (u.${opt} != [ ]) { ${key} = toString u.${opt}; };
    in
    lib.optionalAttrs (u.description != "") { Description = u.description; }
    // lib.optionalAttrs (u.documentation != [ ]) { Documentation = u.documentation; }
    // list "Requires" "requires"
    // list "Wants" "wants"
    // list "Upholds" "upholds"
    // list "After" "after"
    // list "Before" "before"
    // list "BindsTo" "bindsTo"
    // list "PartOf" "partOf"
    // list "Conflicts" "conflicts"
    // list "Requisite" "requisite"
    // list "OnFailure" "onFailure"
    // list "OnSuccess" "onSuccess"
    // lib.optionalAttrs (u.startLimitBurst != null) { StartLimitBurst = u.startLimitBurst; }
    // lib.optionalAttrs (u.startLimitIntervalSec != null) {
      StartLimitIntervalSec = u.startLimitIntervalSec;
    }
    // u.unitConfig;

  # NixOS installs wantedBy/requiredBy as .wants/.requires links; an [Install] section
  # makes `systemctl enable` create the same links in the container.
  installSection =
    u:
    lib.optionalString (u.wantedBy != [ ] || u.requiredBy != [ ]) (
      "\n[Install]\n"
      + attrsToSection (
        lib.optionalAttrs (u.wantedBy != [ ]) { WantedBy = u.wantedBy; }
        // lib.optionalAttrs (u.requiredBy != [ ]) { RequiredBy = u.requiredBy; }
      )
    );

  # nixos/modules/system/boot/systemd.nix: every service gets these on PATH.
  defaultPath = [
    pkgs.coreutils
    pkgs.findutils
    pkgs.gnugrep
    pkgs.gnused
    pkgs.systemd
  ];

  serviceText =
    name: u0:
    let
      u = checkKnown "systemd.services.${name}" u0;
      path = u.path ++ defaultPath;
      env = {
        PATH = "${lib.makeBinPath path}:${lib.makeSearchPathOutput "bin" "sbin" path}";
      }
      // u.environment;
      jobs =
        lib.optionalAttrs (u.script != "") { ExecStart = makeJobScript "${name}-start" u.script; }
        // lib.optionalAttrs (u.preStart != "") {
          ExecStartPre = [ (makeJobScript "${name}-pre-start" u.preStart) ];
        }
        // lib.optionalAttrs (u.postStart != "") {
          ExecStartPost = [ (makeJobScript "${name}-post-start" u.postStart) ];
        }
        // lib.optionalAttrs (u.reload != "") { ExecReload = makeJobScript "${name}-reload" u.reload; }
        // lib.optionalAttrs (u.preStop != "") { ExecStop = makeJobScript "${name}-pre-stop" u.preStop; }
        // lib.optionalAttrs (u.postStop != "") {
          ExecStopPost = makeJobScript "${name}-post-stop" u.postStop;
        };
      # The job scripts are definitions of the same unit options: lists concatenate.
      merged =
        jobs
        // lib.mapAttrs (
          k: v: if jobs ? ${k} && (lib.isList v || lib.isList jobs.${k}) then lib.toList jobs.${k} ++ lib.toList v else v
        ) u.serviceConfig;
    in
    "[Unit]\n"
    + attrsToSection (unitSection u)
    + "\n[Service]\n"
    + lib.concatMapStrings (
      n: lib.optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${toString env.${n}}"}\n"
    ) (builtins.attrNames env)
    + lib.optionalString u.reloadIfChanged "X-ReloadIfChanged=true\n"
    + lib.optionalString (!u.reloadIfChanged && !u.restartIfChanged) "X-RestartIfChanged=false\n"
    + lib.optionalString (!u.stopIfChanged) "X-StopIfChanged=false\n"
    + attrsToSection merged
    + installSection u;

  socketText =
    name: u0:
    let
      u = checkKnown "systemd.sockets.${name}" u0;
    in
    "[Unit]\n"
    + attrsToSection (unitSection u)
    + "\n[Socket]\n"
    + attrsToSection ({ ListenStream = u.listenStreams; } // u.socketConfig)
    + installSection u;

  units =
    lib.mapAttrs' (n: u: lib.nameValuePair "${n}.service" (serviceText n u)) (ours cfg.systemd.services)
    // lib.mapAttrs' (n: u: lib.nameValuePair "${n}.socket" (socketText n u)) (ours cfg.systemd.sockets);

  # systemd-sysusers: the module's system users, each with the group of the same name.
  sysusers = lib.concatStrings (
    lib.mapAttrsToList (
      n: u:
      if (u.group or n) != n then
        throw "systemdtests/nix/render.nix: user ${n} has group ${u.group}; sysusers rendering assumes a group of the same name"
      else
        "u ${n} - ${builtins.toJSON (u.description or "")} ${u.home or "-"}\n"
    ) (lib.filterAttrs (n: _: lib.hasPrefix "opencode" n) cfg.users.users)
  );

  # tmpfiles.d lines: the rules as written, and settings.<name>.<path>.<type> like NixOS.
  tmpfiles =
    lib.concatMapStrings (r: "${r}\n") cfg.systemd.tmpfiles.rules
    + lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          _: paths:
          lib.concatLists (
            lib.mapAttrsToList (
              path: types:
              lib.mapAttrsToList (
                type: e:
                "${e.type or type} ${path} ${e.mode or "-"} ${e.user or "-"} ${e.group or "-"} ${e.age or "-"} ${e.argument or ""}\n"
              ) types
            ) paths
          )
        ) cfg.systemd.tmpfiles.settings
      )
    );

  # boot.kernel.sysctl as a sysctl.d file.
  sysctl = lib.concatStrings (
    lib.mapAttrsToList (k: v: "${k} = ${toOption v}\n") (
      lib.filterAttrs (_: v: v != null) cfg.boot.kernel.sysctl
    )
  );
in
if failed != [ ] then
  throw "the module's assertions failed:\n${lib.concatStringsSep "\n" failed}"
else
  {
    inherit
      units
      sysusers
      tmpfiles
      sysctl
      ;
    inherit (cfg) warnings;
    specs = lib.mapAttrs (_: builtins.toJSON) cfg.services.opencode.specs;
    specFiles = lib.mapAttrs (_: f: "${f}") cfg.services.opencode.specFiles;
  }
