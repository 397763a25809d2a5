# services.opencode's assertions and warnings: settings that cannot work or silently do
# nothing, each message naming the option path. The units are in ./service.nix.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.opencode;
  check = import ./lib.nix;

  enabled = lib.filterAttrs (_: inst: inst.enable) cfg.instances;
  nftables = config.networking.nftables.enable;
  userOf = name: "${check.userPrefix}${name}";
  unitOf = name: "opencode-${name}";
  underAny = roots: p: lib.any (r: p == r || lib.hasPrefix "${r}/" p) roots;
  underTmp = underAny [
    "/tmp"
    "/var/tmp"
  ];


  portUsers = lib.foldlAttrs (
    acc: name: inst:
    acc
    // {
      ${toString inst.listen.port} = (acc.${toString inst.listen.port} or [ ]) ++ [ name ];
    }
  ) { } enabled;

  enabledNames = builtins.attrNames enabled;

  # Paths of another instance that this instance's stateDir must stay clear of: its
  # stateDir is private (0700) to its user and holds its secrets and stamps.
  otherPathsOf =
    name:
    lib.concatLists (
      lib.mapAttrsToList (
        other: o:
        lib.optionals (other != name) (
          [
            {
              inherit other;
              option = "stateDir";
              path = o.stateDir;
            }
            {
              inherit other;
              option = "directory";
              path = o.directory;
            }
          ]
          ++ map (p: {
            inherit other;
            option = "sandbox.readWritePaths";
            path = p;
          }) o.sandbox.readWritePaths
        )
      ) enabled
    );

  instanceAssertions =
    name: inst:
    let
      opt = o: "`services.opencode.instances.${name}.${o}`";
      sameName = "`services.opencode.instances.${name}`";
      others = lib.remove name portUsers.${toString inst.listen.port};
      badOf = pred: lib.filter (x: !(pred x));
      listMsg = xs: lib.concatMapStringsSep ", " (x: ''"${x}"'') xs;
      clashes = check.unitNameClashes enabledNames name;
      stateOverlaps = lib.filter (o: check.pathsOverlap inst.stateDir o.path) (otherPathsOf name);
      # Two tmpfiles rules for one path, with different owners: only one can win.
      createdTwice = lib.filter (
        other:
        other != name
        && enabled.${other}.createDirectory
        && check.stripTrailingSlashes enabled.${other}.directory == check.stripTrailingSlashes inst.directory
      ) enabledNames;
      overlapMsg = lib.concatMapStringsSep "; " (
        o: "`services.opencode.instances.${o.other}.${o.option}` is \"${o.path}\""
      ) stateOverlaps;
      ni = inst.networkIsolation;
      # Options under networkIsolation that only the namespace applies, when set.
      ignoredNetSettings = map (o: "networkIsolation.${o}") (
        lib.optional (ni.outboundAllowCidrs != [ ]) "outboundAllowCidrs"
        ++ lib.optional (ni.outboundAllowDomains != [ ]) "outboundAllowDomains"
        ++ lib.optional (ni.nameservers != [ ]) "nameservers"
        ++ lib.optional (ni.subnet != null) "subnet"
      );
      # Other instances whose directory strictly contains this one's (an equal directory is
      # sharing, handled by createDirectory's assertion).
      nestedIn = lib.filter (
        other:
        other != name
        && check.stripTrailingSlashes enabled.${other}.directory != check.stripTrailingSlashes inst.directory
        && check.isWithin inst.directory enabled.${other}.directory
      ) enabledNames;
      bindClashes = lib.concatMap (
        port: map (other: { inherit port other; }) (lib.remove name (portUsers.${toString port} or [ ]))
      ) inst.sandbox.allowBindPorts;
      pathListAssertion = o: paths: {
        assertion = badOf check.isAbsolute paths == [ ];
        message = "${opt o}: paths must be absolute, got ${listMsg (badOf check.isAbsolute paths)}.";
      };
    in
    [
      {
        assertion = check.isValidName name;
        message = "${sameName}: the instance name \"${name}\" does not make a valid user and unit name `opencode-${name}`. Use lower case letters, digits, `_` and `-`, starting with a letter or digit, at most ${toString check.maxNameLength} characters.";
      }
      {
        assertion = check.isAbsolute inst.directory;
        message = "${opt "directory"}: must be an absolute path, got \"${inst.directory}\".";
      }
      {
        assertion = check.isAbsolute inst.stateDir;
        message = "${opt "stateDir"}: must be an absolute path, got \"${inst.stateDir}\".";
      }
      {
        assertion = check.stripTrailingSlashes inst.stateDir != check.stripTrailingSlashes inst.directory;
        message = "${opt "stateDir"}: must differ from `directory` (\"${inst.directory}\"): the state directory is made private (0700) to the instance user and holds its secrets.";
      }
      {
        assertion = clashes == [ ];
        message = "${sameName}: the instance(s) ${listMsg clashes} would get the unit names of this instance (`${unitOf name}-<setup|proxy|dns>.service`, the suffixes ${listMsg check.unitSuffixes} are the module's). Rename ${listMsg clashes}.";
      }
      {
        assertion = stateOverlaps == [ ];
        message = "${opt "stateDir"}: \"${inst.stateDir}\" is, contains or lies inside a path of another instance (${overlapMsg}). Each instance needs a stateDir of its own, apart from the other instances' paths: it is private (0700) to `${userOf name}` and holds its secrets.";
      }
      {
        assertion = !inst.createDirectory || createdTwice == [ ];
        message = "${opt "createDirectory"}: the instance(s) ${listMsg createdTwice} share the directory \"${inst.directory}\" and create it too; it can be owned by one instance user only. Set `createDirectory = false` on all but one, and give the others access (e.g. a group).";
      }
      {
        assertion = others == [ ];
        message = "${opt "listen.port"}: port ${toString inst.listen.port} is also used by the enabled instance(s) ${listMsg others}. Each enabled instance needs its own port.";
      }
      {
        assertion = inst.environmentFile == null || check.isAbsolute inst.environmentFile;
        message = "${opt "environmentFile"}: must be an absolute path, got \"${toString inst.environmentFile}\".";
      }
      (pathListAssertion "sandbox.readWritePaths" inst.sandbox.readWritePaths)
      (pathListAssertion "sandbox.readOnlyPaths" inst.sandbox.readOnlyPaths)
      (pathListAssertion "sandbox.unixSockets.allow" inst.sandbox.unixSockets.allow)
      {
        assertion = badOf check.isCidr inst.networkIsolation.outboundAllowCidrs == [ ];
        message = "${opt "networkIsolation.outboundAllowCidrs"}: not a CIDR (address/prefix): ${listMsg (badOf check.isCidr inst.networkIsolation.outboundAllowCidrs)}.";
      }
      {
        assertion = inst.networkIsolation.subnet == null || check.isIPv4Subnet30 inst.networkIsolation.subnet;
        message = "${opt "networkIsolation.subnet"}: must be an IPv4 /30 such as 10.231.0.4/30 (one address for each end of the veth pair), got \"${toString inst.networkIsolation.subnet}\".";
      }
      {
        assertion = badOf check.isIP inst.networkIsolation.nameservers == [ ];
        message = "${opt "networkIsolation.nameservers"}: not an IP address: ${listMsg (badOf check.isIP inst.networkIsolation.nameservers)}.";
      }
      {
        assertion = badOf check.isDomain ni.outboundAllowDomains == [ ];
        message = "${opt "networkIsolation.outboundAllowDomains"}: not a host name the resolver can allow: ${listMsg (badOf check.isDomain ni.outboundAllowDomains)}. Give fully qualified names, optionally \"*.\" first and \":port\" last (api.anthropic.com, *.github.com, registry.npmjs.org:443); no URLs, IP addresses (put those in outboundAllowCidrs) or single-label names.";
      }
      # Settings of the network namespace do nothing without it; an allow-list that does
      # nothing would leave the instance's egress open while the configuration reads as
      # restricted.
      {
        assertion = ni.enable || ignoredNetSettings == [ ];
        message = "${lib.concatMapStringsSep ", " opt ignoredNetSettings}: set while ${opt "networkIsolation.enable"} is false, so nothing applies them: the instance shares the host's network and reaches everything the host reaches. Set `networkIsolation.enable = true`, or remove them.";
      }
      {
        assertion = nestedIn == [ ];
        message = "${opt "directory"}: \"${inst.directory}\" lies inside the directory of ${listMsg nestedIn} (${lib.concatMapStringsSep ", " (o: "`services.opencode.instances.${o}.directory` is \"${enabled.${o}.directory}\"") nestedIn}): that instance's agent owns what surrounds this one's directory, so it can rename it or put something else (a symlink) in its place before this server starts. Give each instance a directory of its own, or share one directory exactly.";
      }
      {
        assertion = !underTmp inst.stateDir;
        message = "${opt "stateDir"}: \"${inst.stateDir}\" is under /tmp or /var/tmp, which the server's PrivateTmp= replaces with a private, empty one: the unit would fail with 226/NAMESPACE (its ReadWritePaths= is not there). Use a path such as /var/lib/opencode/${name}.";
      }
      {
        assertion = bindClashes == [ ];
        message = "${opt "sandbox.allowBindPorts"}: ${lib.concatMapStringsSep ", " (c: "${toString c.port} is the listen.port of instance \"${c.other}\"") bindClashes}. The agent could take that port while the other server is down and receive its clients (and their password). Pick other ports.";
      }
      {
        assertion = check.isIP inst.listen.address;
        message = "${opt "listen.address"}: must be an IP address literal such as 127.0.0.1 or ::1 (the launcher never resolves names), got \"${inst.listen.address}\".";
      }
    ];

  # The opencode the module runs (issue 16 point 9): its `version` must be one the launcher
  # is made for. A package without `version` (a wrapper, or the VM tests' stand-in) cannot
  # be checked here and only warns.
  opencodeVersion = cfg.package.version or null;
  pinHint = "Pin a known-good opencode: `services.opencode.package = pkgs.callPackage ./opencode-${check.opencodePinned}.nix { };` (a copy of nixpkgs' opencode package at that version), or an overlay `final: prev: { opencode = prev.opencode.overrideAttrs (_: { version = \"${check.opencodePinned}\"; src = …; }); }` (docs/nixos.md, \"Which opencode\").";
  opencodeVersionAssertion = {
    assertion = opencodeVersion == null || check.isSupportedOpencodeVersion opencodeVersion;
    message = "`services.opencode.package`: opencode ${toString opencodeVersion} is not supported; this ocnix supports opencode ${check.opencodeSeries}.x (tested: ${check.opencodePinned}). Its config keys, `serve` flags and the sandbox's grants are made for that series. ${pinHint}";
  };
  opencodeVersionWarnings = lib.optional (opencodeVersion == null) "`services.opencode.package` (${cfg.package.name or "?"}) has no `version`, so the module cannot check it is opencode ${check.opencodeSeries}.x, the series this ocnix supports (tested: ${check.opencodePinned}).";

  instanceWarnings =
    name: inst:
    let
      opt = o: "`services.opencode.instances.${name}.${o}`";
      # PrivateTmp= gives the unit its own /tmp and /var/tmp: any path there is not the
      # host's. For environmentFile LoadCredential reads the host's file, so it is fine.
      tmpPaths = lib.concatLists [
        (lib.optional (underTmp inst.directory) { o = "directory"; p = inst.directory; })
        (map (p: { o = "sandbox.readWritePaths"; inherit p; }) (lib.filter underTmp inst.sandbox.readWritePaths))
        (map (p: { o = "sandbox.readOnlyPaths"; inherit p; }) (lib.filter underTmp inst.sandbox.readOnlyPaths))
        (map (p: { o = "sandbox.unixSockets.allow"; inherit p; }) (lib.filter underTmp inst.sandbox.unixSockets.allow))
      ];
    in
    lib.optional (inst.networkIsolation.enable && !nftables) "${opt "networkIsolation.enable"}: `networking.nftables.enable` is off. The launcher programs nftables itself (inside the namespace and for the host-side masquerade), which works beside the iptables firewall, but the nftables firewall is what this module is tested with."
    ++ lib.optional (inst.listen.port < 1024)
      "${opt "listen.port"}: ${toString inst.listen.port} is a privileged port, and the server runs without capabilities (CapabilityBoundingSet is empty and the launcher drops them), so it cannot bind it. Use a port from 1024 up, or put a reverse proxy in front."
    ++ lib.optionals ((inst.serviceOverrides.PrivateTmp or true) != false) (
      map (
        t: "${opt t.o}: ${t.p} is under /tmp or /var/tmp, which the unit's PrivateTmp= replaces with a private, empty one: the server would not see the host's ${t.p}. Move it, or set `serviceOverrides.PrivateTmp = false`."
      ) tmpPaths
    );
in
{
  config = lib.mkIf cfg.enable {
    assertions = [ opencodeVersionAssertion ] ++ lib.concatLists (lib.mapAttrsToList instanceAssertions enabled);
    warnings = opencodeVersionWarnings ++ lib.concatLists (lib.mapAttrsToList instanceWarnings enabled);
  };
}
