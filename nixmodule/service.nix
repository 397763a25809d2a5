{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkBefore
    mkDefault
    mkIf
    mkMerge
    ;

  cfg = config.services.opencode;
  check = import ./lib.nix;
  mkSpec = import ./spec.nix;

  enabled = lib.filterAttrs (_: inst: inst.enable) cfg.instances;
  isolated = lib.filterAttrs (_: inst: inst.networkIsolation.enable) enabled;
  anyIsolated = isolated != { };
  nftables = config.networking.nftables.enable;

  launcherExe = "${cfg.launcherPackage}/bin/opencode-launcher";

  userOf = name: "${check.userPrefix}${name}";
  unitOf = name: "opencode-${name}";
  netnsOf = name: "opencode-${name}";
  specEtcPath = name: "ocnix/instances/${name}.json";

  # --- the instance spec -------------------------------------------------------------------

  # A script option is the path of an executable (a Nix path, or one word starting with '/'),
  # or shell code that gets wrapped into a script in the store.
  isExecutablePath = s: builtins.match "/[^[:space:]]*" s != null;
  resolveScript =
    name: kind: script:
    if script == null then
      null
    else if builtins.isPath script || builtins.isAttrs script then
      "${script}" # a Nix path (copied to the store) or a derivation such as writeShellScript's
    else if isExecutablePath script then
      script
    else
      "${pkgs.writeShellScript "opencode-${name}-${kind}-init" ''
        set -euo pipefail
        ${script}
      ''}";

  jsonFormat = pkgs.formats.json { };

  # opencodeCfg: modules over a free-form JSON attrset, so priorities work across them.
  # ocnix's locked-down defaults ("$schema", autoupdate = false, share = "disabled") and the
  # folding of model/provider are applied by the launcher (one place for Nix and non-Nix
  # users); whatever is set here wins over those defaults.
  opencodeConfigOf =
    name: inst:
    let
      evaluated = lib.evalModules {
        prefix = [
          "services"
          "opencode"
          "instances"
          name
          "opencodeCfg"
        ];
        modules = [ { freeformType = jsonFormat.type; } ] ++ inst.opencodeCfg;
      };
    in
    builtins.removeAttrs evaluated.config [ "_module" ];

  specOf =
    name: inst:
    mkSpec {
      inherit name;
      user = userOf name;
      group = userOf name;
      inherit (inst)
        directory
        stateDir
        environment
        environmentFile
        logLevel
        model
        provider
        extraArgs
        initScriptTimeout
        ;
      listen = {
        inherit (inst.listen) address port;
      };
      path = map (p: "${lib.getBin p}/bin") inst.path;
      sandbox = {
        inherit (inst.sandbox) readWritePaths readOnlyPaths allowBindPorts;
        unixSockets.allow = inst.sandbox.unixSockets.allow;
      };
      networkIsolation = {
        inherit (inst.networkIsolation)
          enable
          outboundAllowCidrs
          outboundAllowDomains
          subnet
          nameservers
          ;
      };
      preInitScript = resolveScript name "pre" inst.preInitScript;
      postInitScript = resolveScript name "post" inst.postInitScript;
      opencodeConfig = opencodeConfigOf name inst;
      command = [ "${cfg.package}/bin/opencode" ];
    };

  # The spec in the store, validated by the launcher at build time: a bad CIDR or path fails
  # `nixos-rebuild build` with the launcher's own message. Units use the checked copy.
  checkedSpecOf =
    name: inst:
    let
      raw = pkgs.writeText "opencode-${name}-spec.json" (builtins.toJSON (specOf name inst));
    in
    pkgs.runCommand "opencode-${name}-spec-checked.json" { preferLocalBuild = true; } ''
      ${launcherExe} check --config ${raw}
      cp ${raw} $out
    '';

  # --- systemd helpers ---------------------------------------------------------------------

  isIPv6Literal = a: lib.hasInfix ":" a;
  hostPort = address: port: if isIPv6Literal address then "[${address}]:${toString port}" else "${address}:${toString port}";
  # Where the proxy connects inside the namespace: the server's port on the namespace's
  # loopback, whatever listen.address is on the host (netpolicy's ProxyTarget).
  proxyTarget = port: "127.0.0.1:${toString port}";

  # Readiness: opencode's socket accepts a few ms before the server answers, and a request
  # in that gap can hang forever, so the main unit becomes active only once
  # /global/health answers (any HTTP status: 401 with a password set also means "up"),
  # polled with a short timeout per request. Units ordered after it (the proxy) then never
  # forward into that gap. Non-fatal after 60 s: a slow start is logged, not killed.
  readinessCheck =
    name: inst:
    let
      a = inst.listen.address;
      local =
        if inst.networkIsolation.enable || a == "0.0.0.0" then
          "127.0.0.1"
        else if a == "::" then
          "::1"
        else
          a;
      url = "http://${hostPort local inst.listen.port}/global/health";
    in
    pkgs.writeShellScript "opencode-${name}-wait-ready" ''
      for _ in $(${pkgs.coreutils}/bin/seq 1 60); do
        code=$(${pkgs.curl}/bin/curl -s -o /dev/null -m 2 -w '%{http_code}' ${lib.escapeShellArg url} || true)
        if [ "$code" != "000" ] && [ -n "$code" ]; then exit 0; fi
        ${pkgs.coreutils}/bin/sleep 1
      done
      echo "opencode-${name}: ${url} did not answer within 60 s" >&2
      exit 1
    '';

  # ProtectHome= hides /home, /root and /run/user. Paths there are bound back in on a tmpfs.
  homeRoots = [
    "/home"
    "/root"
    "/run/user"
  ];
  underAny = roots: p: lib.any (r: p == r || lib.hasPrefix "${r}/" p) roots;
  underHome = underAny homeRoots;
  underTmp = underAny [
    "/tmp"
    "/var/tmp"
  ];

  mainService =
    name: inst:
    let
      spec = cfg.specFiles.${name};
      rwPaths = [
        inst.directory
        inst.stateDir
      ]
      ++ inst.sandbox.readWritePaths;
      roPaths = inst.sandbox.readOnlyPaths ++ inst.sandbox.unixSockets.allow;
      homeRw = lib.filter underHome rwPaths;
      homeRo = lib.filter underHome roPaths;
      needsHome = homeRw != [ ] || homeRo != [ ];
      bindReadOnly =
        map (p: "-${p}") homeRo
        ++ lib.optional inst.networkIsolation.enable "/etc/netns/${netnsOf name}/resolv.conf:/etc/resolv.conf";
    in
    {
      description = "opencode server (instance ${name})";
      wantedBy = [ "multi-user.target" ];
      requires = [ "${unitOf name}-setup.service" ];
      after = [ "${unitOf name}-setup.service" ];

      serviceConfig = mkMerge [
        {
          Type = "simple";
          User = userOf name;
          Group = userOf name;
          ExecStart = "${launcherExe} run --config ${spec}";
          ExecStartPost = [ "-${readinessCheck name inst}" ];
          Restart = mkDefault "on-failure";
          RestartSec = mkDefault 5;
          # opencode exits 143 on SIGTERM; it can swallow SIGTERM during a plugin install, so
          # systemd's KILL after TimeoutStopSec is the backstop. SIGTERM goes to the launcher,
          # which forwards it to the server.
          SuccessExitStatus = [ 143 ];
          KillMode = mkDefault "mixed";
          TimeoutStopSec = mkDefault 15;

          # "-": a missing directory is reported by the launcher with a clear message instead
          # of a 226/NAMESPACE failure. stateDir is created by the setup unit.
          ReadWritePaths = [
            "-${inst.directory}"
            inst.stateDir
          ]
          ++ map (p: "-${p}") inst.sandbox.readWritePaths;

          # Hardening: the first of three independent layers (then Landlock + seccomp in the
          # launcher, then the network namespace). Overridable with `serviceOverrides`.
          NoNewPrivileges = mkDefault true;
          CapabilityBoundingSet = mkDefault "";
          AmbientCapabilities = mkDefault "";
          ProtectSystem = mkDefault "strict";
          ProtectHome = mkDefault (if needsHome then "tmpfs" else true);
          PrivateTmp = mkDefault true;
          PrivateDevices = mkDefault true;
          ProtectKernelTunables = mkDefault true;
          ProtectKernelModules = mkDefault true;
          ProtectKernelLogs = mkDefault true;
          ProtectControlGroups = mkDefault true;
          ProtectClock = mkDefault true;
          ProtectHostname = mkDefault true;
          ProtectProc = mkDefault "invisible";
          LockPersonality = mkDefault true;
          RestrictNamespaces = mkDefault true;
          RestrictRealtime = mkDefault true;
          RestrictSUIDSGID = mkDefault true;
          RemoveIPC = mkDefault true;
          SystemCallArchitectures = mkDefault "native";
          UMask = mkDefault "0077";
          RestrictAddressFamilies = mkBefore [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
            "AF_NETLINK"
          ];
          # No MemoryDenyWriteExecute: opencode is a Bun binary and its JIT needs W+X pages.
          MemoryDenyWriteExecute = mkDefault false;
        }
        (mkIf (homeRw != [ ]) { BindPaths = map (p: "-${p}") homeRw; })
        (mkIf (bindReadOnly != [ ]) { BindReadOnlyPaths = bindReadOnly; })
        (mkIf inst.networkIsolation.enable { NetworkNamespacePath = "/run/netns/${netnsOf name}"; })
        inst.serviceOverrides
      ];
    };

  setupService =
    name: inst:
    let
      spec = cfg.specFiles.${name};
      netIso = inst.networkIsolation.enable;
    in
    {
      description = "opencode instance ${name}: state, config, network and init scripts";
      after = [ "network.target" ] ++ lib.optional nftables "nftables.service";
      wants = lib.optional netIso "network.target";
      # NixOS reloads nftables with `flush ruleset`, which removes the host-side forwarding
      # and masquerade of isolated instances (the filter inside the namespace stays: fail
      # closed). Re-running the idempotent setup on that reload repairs it without restarting
      # the server.
      unitConfig = mkIf (netIso && nftables) { ReloadPropagatedFrom = [ "nftables.service" ]; };
      # Deliberately no mount or namespace hardening here: setup creates the network
      # namespace under /run/netns and /etc/netns, which must be visible on the host.
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${launcherExe} setup --config ${spec}";
        ExecReload = "${launcherExe} setup --config ${spec}";
        # Two init scripts, each bounded by initScriptTimeout, plus the setup steps.
        TimeoutStartSec = 2 * inst.initScriptTimeout + 60;
      }
      // lib.optionalAttrs netIso { ExecStop = "${launcherExe} teardown --config ${spec}"; };
    };

  proxySocket = name: inst: {
    description = "opencode instance ${name}: published port";
    wantedBy = [ "sockets.target" ];
    socketConfig = {
      ListenStream = hostPort inst.listen.address inst.listen.port;
      FreeBind = mkDefault true;
    };
  };

  proxyService = name: inst: {
    description = "opencode instance ${name}: proxy from the host into the instance's network namespace";
    requires = [
      "${unitOf name}.service"
      "${unitOf name}-proxy.socket"
    ];
    after = [
      "${unitOf name}.service"
      "${unitOf name}-proxy.socket"
    ];
    serviceConfig = {
      ExecStart = "${pkgs.systemd}/lib/systemd/systemd-socket-proxyd ${proxyTarget inst.listen.port}";
      NetworkNamespacePath = "/run/netns/${netnsOf name}";
      DynamicUser = true;
      NoNewPrivileges = mkDefault true;
      CapabilityBoundingSet = mkDefault "";
      PrivateTmp = mkDefault true;
      PrivateDevices = mkDefault true;
      ProtectSystem = mkDefault "strict";
      ProtectHome = mkDefault true;
      ProtectKernelTunables = mkDefault true;
      ProtectKernelModules = mkDefault true;
      ProtectControlGroups = mkDefault true;
      RestrictNamespaces = mkDefault true;
      LockPersonality = mkDefault true;
      MemoryDenyWriteExecute = mkDefault true;
      RestrictAddressFamilies = mkBefore [
        "AF_UNIX"
        "AF_INET"
        "AF_INET6"
      ];
    };
  };

  # --- assertions --------------------------------------------------------------------------

  portUsers = lib.foldlAttrs (
    acc: name: inst:
    acc
    // {
      ${toString inst.listen.port} = (acc.${toString inst.listen.port} or [ ]) ++ [ name ];
    }
  ) { } enabled;

  instanceAssertions =
    name: inst:
    let
      opt = o: "`services.opencode.instances.${name}.${o}`";
      sameName = "`services.opencode.instances.${name}`";
      others = lib.remove name portUsers.${toString inst.listen.port};
      badOf = pred: lib.filter (x: !(pred x));
      listMsg = xs: lib.concatMapStringsSep ", " (x: ''"${x}"'') xs;
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
        assertion = check.isIP inst.listen.address;
        message = "${opt "listen.address"}: must be an IP address literal such as 127.0.0.1 or ::1 (the launcher never resolves names), got \"${inst.listen.address}\".";
      }
    ];

  instanceWarnings =
    name: inst:
    let
      opt = o: "`services.opencode.instances.${name}.${o}`";
      tmpSockets = lib.filter underTmp inst.sandbox.unixSockets.allow;
    in
    lib.optional (inst.networkIsolation.enable && !nftables) "${opt "networkIsolation.enable"}: `networking.nftables.enable` is off. The launcher programs nftables itself (inside the namespace and for the host-side masquerade), which works beside the iptables firewall, but the nftables firewall is what this module is tested with."
    ++ lib.optional (inst.listen.port < 1024)
      "${opt "listen.port"}: ${toString inst.listen.port} is a privileged port, and the server runs without capabilities (CapabilityBoundingSet is empty and the launcher drops them), so it cannot bind it. Use a port from 1024 up, or put a reverse proxy in front."
    ++ lib.optional (tmpSockets != [ ] && (inst.serviceOverrides.PrivateTmp or true) != false)
      "${opt "sandbox.unixSockets.allow"}: ${lib.concatStringsSep ", " tmpSockets} is under /tmp or /var/tmp, which the unit's PrivateTmp= hides. Move the socket, or set `serviceOverrides.PrivateTmp = false`.";
in
{
  config = mkIf cfg.enable {
    assertions = lib.concatLists (lib.mapAttrsToList instanceAssertions enabled);
    warnings = lib.concatLists (lib.mapAttrsToList instanceWarnings enabled);

    services.opencode.specs = lib.mapAttrs specOf enabled;
    services.opencode.specFiles = lib.mapAttrs checkedSpecOf enabled;

    environment.systemPackages = [ cfg.launcherPackage ];

    # The checked spec of each instance, at a stable path for operators:
    #   opencode-launcher explain --config /etc/ocnix/instances/<name>.json
    #   opencode-launcher run --config /etc/ocnix/instances/<name>.json -- CMD  (as root)
    environment.etc = lib.mapAttrs' (
      name: _: lib.nameValuePair (specEtcPath name) { source = cfg.specFiles.${name}; }
    ) enabled;

    users.users = lib.mapAttrs' (
      name: inst:
      lib.nameValuePair (userOf name) {
        isSystemUser = true;
        group = userOf name;
        home = inst.stateDir;
        description = "opencode instance ${name}";
      }
    ) enabled;
    users.groups = lib.mapAttrs' (name: _: lib.nameValuePair (userOf name) { }) enabled;

    systemd.services = mkMerge [
      (lib.mapAttrs' (name: inst: lib.nameValuePair (unitOf name) (mainService name inst)) enabled)
      (lib.mapAttrs' (name: inst: lib.nameValuePair "${unitOf name}-setup" (setupService name inst)) enabled)
      (lib.mapAttrs' (name: inst: lib.nameValuePair "${unitOf name}-proxy" (proxyService name inst)) isolated)
    ];
    systemd.sockets = lib.mapAttrs' (
      name: inst: lib.nameValuePair "${unitOf name}-proxy" (proxySocket name inst)
    ) isolated;

    networking.firewall.allowedTCPPorts = lib.mapAttrsToList (_: inst: inst.listen.port) (
      lib.filterAttrs (_: inst: inst.openFirewall) enabled
    );

    boot.kernel.sysctl = mkIf anyIsolated {
      # Forwarding between the instances' veth pairs and the uplink.
      "net.ipv4.ip_forward" = mkDefault 1;
      # nftables `log` inside a non-initial network namespace is silent without this; it is
      # what makes `opencode-<name>-blocked:` lines appear in the kernel log.
      "net.netfilter.nf_log_all_netns" = mkDefault 1;
    };
  };
}
