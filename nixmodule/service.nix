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
  # Instances whose egress is also allowed by host name run their own resolver unit.
  withDomains = lib.filterAttrs (_: inst: inst.networkIsolation.outboundAllowDomains != [ ]) isolated;
  nftables = config.networking.nftables.enable;

  launcherExe = lib.getExe cfg.launcherPackage;
  systemctl = "${config.systemd.package}/bin/systemctl";

  userOf = name: "${check.userPrefix}${name}";
  unitOf = name: "opencode-${name}";
  netnsOf = name: "opencode-${name}";
  specEtcPath = name: "ocnix/instances/${name}.json";
  netnsEtcDir = name: "/etc/netns/${netnsOf name}";

  # environmentFile reaches the server through LoadCredential=, so the file itself can stay
  # root-only: the unit's copy is readable by the unit's user, and the launcher reads
  # $CREDENTIALS_DIRECTORY/<this id> instead of the spec's path when it is there
  # (launcher.EnvFileCredential), so one spec serves every unit.
  credentialId = "environmentFile";

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
        # As in NixOS modules: `{ pkgs, lib, ... }:` works in opencodeCfg.
        specialArgs = { inherit pkgs; };
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
      path = map (p: "${lib.getBin p}/bin") (inst.path ++ inst.toolset);
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
      # getExe' with the name: a replacement package (such as the VM tests' fake server)
      # need not set meta.mainProgram, and the contract is `<package>/bin/opencode`.
      command = [ (lib.getExe' cfg.package "opencode") ];
    };

  # The spec in the store, validated by the launcher at build time: a bad CIDR or path fails
  # `nixos-rebuild build` with the launcher's own message. Units use the checked copy.
  checkedSpec =
    fileName: spec:
    let
      raw = pkgs.writeText "${fileName}.json" (builtins.toJSON spec);
    in
    pkgs.runCommand "${fileName}-checked.json" { preferLocalBuild = true; } ''
      ${launcherExe} check --config ${raw}
      cp ${raw} $out
    '';
  checkedSpecOf = name: inst: checkedSpec "opencode-${name}-spec" (specOf name inst);

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
  # forward into that gap. The wait is bounded by the clock (readinessSeconds, plus one
  # last request of at most 2 s), not by a number of attempts whose length depends on how
  # fast curl fails; after it the unit becomes active anyway and the slow start is logged.
  # TimeoutStartSec leaves room for it, so a slow start is never killed and restarted.
  readinessSeconds = 60;
  startTimeoutSec = readinessSeconds + 60;
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
      deadline=$((SECONDS + ${toString readinessSeconds}))
      while :; do
        code=$(${pkgs.curl}/bin/curl -s -o /dev/null -m 2 -w '%{http_code}' ${lib.escapeShellArg url} || true)
        if [ "$code" != "000" ] && [ -n "$code" ]; then exit 0; fi
        if [ "$SECONDS" -ge "$deadline" ]; then break; fi
        ${pkgs.coreutils}/bin/sleep 1
      done
      echo "opencode-${name}: ${url} did not answer within ${toString readinessSeconds} s; the unit is marked active anyway" >&2
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

  inherit (import ./hardening.nix { inherit lib; }) hardening umask launcherSyscalls;

  # PrivatePIDs= (systemd 257): the server unit gets a PID namespace of its own, as `run`
  # gives one when it starts as root. The launcher, pid 1 there, stays a small init that
  # reaps the agent's orphans and runs the launcher proper as its child (internal/pidinit).
  # Older systemd would only warn about an unknown key, so it is left out there.
  privatePIDs = lib.versionAtLeast (config.systemd.package.version or "0") "257";

  # The host directories the setup unit writes (ReadWritePaths=), with the mode the launcher
  # gives them (setuplock wants /run/opencode 0700 root). They must exist before the unit's
  # mount namespace is set up: systemd-tmpfiles makes them (config below).
  setupRwHostDirs = [
    "/run/opencode"
    "/run/ocnix"
    "/var/lib/opencode"
    "/etc/netns"
  ];
  setupHostDirModes = {
    "/run/opencode" = "0700";
  };
  setupNeedsHome =
    inst:
    lib.any underHome (
      [
        inst.directory
        inst.stateDir
      ]
      ++ inst.sandbox.readWritePaths
      ++ inst.sandbox.readOnlyPaths
      ++ inst.sandbox.unixSockets.allow
    );

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
      # Wants, not Requires, on the resolver: restarting it must not restart the agent, and a
      # server without its resolver only fails to resolve (fail closed).
      wants = lib.optional (withDomains ? ${name}) "${unitOf name}-dns.service";
      after = [ "${unitOf name}-setup.service" ] ++ lib.optional (withDomains ? ${name}) "${unitOf name}-dns.service";

      # Restart=on-failure every 5 s, but give up after 5 failed starts within 5 minutes
      # (the default limit, 5 in 10 s, never triggers with RestartSec=5): a server that
      # cannot start then shows as failed instead of looping forever. `systemctl
      # reset-failed` and a start, or the next `nixos-rebuild switch`, try again.
      startLimitBurst = mkDefault 5;
      startLimitIntervalSec = mkDefault 300;

      serviceConfig = mkMerge [
        {
          Type = "simple";
          User = userOf name;
          Group = userOf name;
          # "+": as root and outside the unit's sandboxing. The launcher checks what the
          # unprivileged `run` cannot: that the namespace's nftables filter still matches
          # the plan (`ip netns exec … nft flush ruleset` must not leave an automatic
          # restart with open egress) and that the last setup succeeded. Non-zero refuses
          # the start.
          ExecStartPre = [ "+${launcherExe} preflight --config ${spec}" ];
          ExecStart = "${launcherExe} run --config ${spec}";
          # "!": the check runs as root (still in the unit's sandbox and network namespace,
          # with no capabilities): the peer guard refuses the instance's own uid a
          # connection to its own server port (opencode hands OPENCODE_SERVER_PASSWORD to
          # every command the agent runs), so as User= every poll would be reset.
          ExecStartPost = [ "-!${readinessCheck name inst}" ];
          TimeoutStartSec = mkDefault startTimeoutSec;
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

          RestrictAddressFamilies = mkBefore [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
            "AF_NETLINK"
          ];
          # Everything else (what the launcher and opencode use) is in @system-service; the
          # launcher's own filters then narrow it further for the server.
          SystemCallFilter = [ "@system-service" ] ++ launcherSyscalls;
        }
        # Hardening: the first of three independent layers (then Landlock + seccomp in the
        # launcher, then the network namespace). Overridable with `serviceOverrides`.
        (hardening {
          CapabilityBoundingSet = "";
          AmbientCapabilities = "";
          ProtectHome = if needsHome then "tmpfs" else true;
          RemoveIPC = true;
          # Landlock does not cover System V IPC: without it the instance reaches the
          # host's and other instances' segments whose mode lets its uid in.
          PrivateIPC = true;
          PrivateMounts = true;
          UMask = umask;
          # No MemoryDenyWriteExecute: opencode is a Bun binary and its JIT needs W+X pages.
          MemoryDenyWriteExecute = false;
        })
        (resourceLimits inst)
        (mkIf privatePIDs { PrivatePIDs = mkDefault true; })
        (mkIf (inst.environmentFile != null) {
          LoadCredential = [ "${credentialId}:${inst.environmentFile}" ];
        })
        (mkIf (homeRw != [ ]) { BindPaths = map (p: "-${p}") homeRw; })
        (mkIf (bindReadOnly != [ ]) { BindReadOnlyPaths = bindReadOnly; })
        (mkIf inst.networkIsolation.enable { NetworkNamespacePath = "/run/netns/${netnsOf name}"; })
        inst.serviceOverrides
      ];
    };

  # Runs before setup, as root: a missing `directory` fails here with what to do, instead
  # of deep inside the launcher.
  directoryCheck =
    name: inst:
    let
      dir = lib.escapeShellArg inst.directory;
      user = userOf name;
      how =
        if inst.createDirectory then
          "services.opencode.instances.${name}.createDirectory is on, but systemd-tmpfiles did not create it: run `systemd-tmpfiles --create` and see its errors (a parent that is a file or a read-only mount)"
        else
          "create it, writable by ${user} (e.g. `install -d -o ${user} -g ${user} -m 0750 ${lib.escapeShellArg inst.directory}`), or set services.opencode.instances.${name}.createDirectory = true";
    in
    pkgs.writeShellScript "opencode-${name}-check-directory" ''
      if [ ! -d ${dir} ]; then
        echo ${lib.escapeShellArg "opencode-${name}: directory ${inst.directory} does not exist; ${how}."} >&2
        exit 1
      fi
    '';

  # ExecReload of setup (nftables reloads propagate to it). Two things a plain re-run of
  # setup would get wrong:
  # - A failed reload leaves a oneshot unit "active" while `run` refuses to start after a
  #   failed setup, forever. So a failure restarts the setup unit: a full teardown and setup
  #   (and, through Requires=, a restart of the server). If that fails too, the setup unit
  #   is failed and the server stopped, which is what `systemctl status` then shows.
  # - resolv.conf: setup replaces /etc/netns/opencode-<name>/resolv.conf by rename (so no
  #   reader ever sees half a file), but the server's unit bind-mounted the previous file,
  #   by inode, when it started. A bind mount cannot follow a rename, and a directory bind
  #   cannot stand in for the file /etc/resolv.conf. So when the file the server sees
  #   (through /proc/<pid>/root, its mount namespace) differs from the new one, the server
  #   is restarted to pick it up. An unchanged file (the usual case) restarts nothing.
  setupReload =
    name: inst: spec:
    pkgs.writeShellScript "opencode-${name}-setup-reload" (
      ''
        set -u
        if ! ${launcherExe} setup --config ${spec}; then
          echo "opencode-${name}: setup failed on reload; restarting ${unitOf name}-setup.service (teardown and setup; the server restarts with it)" >&2
          ${systemctl} restart --no-block ${unitOf name}-setup.service
          exit 1
        fi
      ''
      + lib.optionalString inst.networkIsolation.enable ''
        pid=$(${systemctl} show --property MainPID --value ${unitOf name}.service)
        if [ -n "$pid" ] && [ "$pid" != 0 ] &&
          ! ${pkgs.diffutils}/bin/cmp -s ${netnsEtcDir name}/resolv.conf "/proc/$pid/root/etc/resolv.conf"; then
          echo "opencode-${name}: ${netnsEtcDir name}/resolv.conf changed; restarting ${unitOf name}.service, which still sees the previous one" >&2
          ${systemctl} try-restart --no-block ${unitOf name}.service
        fi
      ''
    );

  # services.opencode.instances.<name>.resources, per unit (systemd's cgroup accounting).
  # mkDefault, so serviceOverrides can still set them; null leaves systemd's default.
  resourceLimits =
    inst:
    lib.mapAttrs (_: mkDefault) (
      lib.filterAttrs (_: v: v != null) {
        MemoryMax = inst.resources.memoryMax;
        TasksMax = inst.resources.tasksMax;
        CPUWeight = inst.resources.cpuWeight;
      }
    );

  setupService =
    name: inst:
    let
      spec = cfg.specFiles.${name};
      netIso = inst.networkIsolation.enable;
    in
    {
      description = "opencode instance ${name}: state, config, network and init scripts";
      # An isolated instance's egress needs the uplink: network-online.target, pulled in
      # only for those (a consumer must not pull in network.target; isolated instances do
      # need network-online.target). tmpfiles-resetup: on `nixos-rebuild switch`, the rules
      # that create `directory`, stateDir and the host directories setup writes (which
      # must exist before the unit's mount namespace is set up) are applied by that unit.
      after = [
        "network.target"
      ]
      ++ lib.optional netIso "network-online.target"
      ++ lib.optional nftables "nftables.service"
      ++ [ "systemd-tmpfiles-resetup.service" ];
      wants = lib.optional netIso "network-online.target";
      # NixOS reloads nftables with `flush ruleset`, which removes the host's table
      # `inet ocnix`: the peer guard that keeps every instance, isolated or not, off the
      # others' ports, and the forwarding and masquerade of isolated instances (the filter
      # inside a namespace stays: fail closed). Re-running the idempotent setup on that
      # reload repairs it without restarting the server.
      unitConfig = mkIf nftables { ReloadPropagatedFrom = [ "nftables.service" ]; };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStartPre = [ "${directoryCheck name inst}" ];
        ExecStart = "${launcherExe} setup --config ${spec}";
        ExecReload = "${setupReload name inst spec}";
        # What setup writes, all else is read-only (ProtectSystem=strict): the lock directory
        # (/run/opencode), the forwarding and listener records (/run/ocnix), the instances'
        # private directories and default state (/var/lib/opencode), the namespaces'
        # resolv.conf (/etc/netns), and the instance's own paths. The host ones are made by
        # the tmpfiles rules below, before any unit starts; "-": a missing one makes setup
        # fail naming the path, not the unit with 226/NAMESPACE.
        ReadWritePaths = map (p: "-${p}") (
          setupRwHostDirs
          ++ [
            inst.directory
            inst.stateDir
          ]
          ++ inst.sandbox.readWritePaths
        );
        # Two init scripts, each bounded by initScriptTimeout, plus the setup steps.
        TimeoutStartSec = 2 * inst.initScriptTimeout + 60;
        # Every instance: setup registers its listen port in the host's peer guard (no
        # instance reaches another's server), and teardown takes that back; isolated ones
        # also lose their namespace, veth and nft tables.
        ExecStop = "${launcherExe} teardown --config ${spec}";
        RestrictAddressFamilies = mkBefore [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK" # nftables, veth, routes, addresses
        ];
        # @system-service plus: @mount (the namespace pin, the private /proc and the
        # resolv.conf bind mount of `run` for the init scripts) and the launcher's calls.
        # setns/unshare are in @process.
        SystemCallFilter = [
          "@system-service"
          "@mount"
        ]
        ++ launcherSyscalls;
      }
      # Setup is root and needs real privileges, but only these. Every value with its reason:
      # - CAP_NET_ADMIN: veth, addresses, routes, nftables, per-interface sysctls;
      # - CAP_SYS_ADMIN: setns/unshare (network, mount, PID, IPC namespaces), mounts;
      # - CAP_SYS_CHROOT: setns into a mount namespace needs it too;
      # - CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: create and fix the
      #   owner and mode of stateDir, the config and `directory`, owned by the instance user;
      # - CAP_SETUID, CAP_SETGID, CAP_SETPCAP: `run` drops to the instance user and clears
      #   the bounding set for the init scripts;
      # - CAP_SYS_PTRACE: the unix gate (root) copies a socket from the init script's
      #   process (another uid) with pidfd_getfd, and reads /proc/<pid> of it;
      # - CAP_KILL: stop the init script's processes (another uid) on timeout.
      // hardening {
        CapabilityBoundingSet = [
          "CAP_NET_ADMIN"
          "CAP_SYS_ADMIN"
          "CAP_SYS_CHROOT"
          "CAP_CHOWN"
          "CAP_FOWNER"
          "CAP_DAC_OVERRIDE"
          "CAP_DAC_READ_SEARCH"
          "CAP_SETUID"
          "CAP_SETGID"
          "CAP_SETPCAP"
          "CAP_SYS_PTRACE"
          "CAP_KILL"
        ];
        # A mount namespace of its own (ProtectSystem=strict and friends). The namespace pin
        # on /run/netns/<netns> (and its removal) is made in PID 1's mount namespace by the
        # launcher (netpolicy's inHostMounts), so it reaches the host, where the server's
        # NetworkNamespacePath= looks for it, and propagates back into this (slave) view.
        # /run/netns is therefore read-only here on purpose: setup never writes it in its own
        # namespace, and should the launcher ever fall back to pinning here (PID 1's
        # namespace unreadable), it fails with EROFS instead of making a pin that only this
        # unit sees (the server would fail with 225/NETWORK).
        ProtectSystem = "strict";
        # stateDir, `directory` and readWritePaths may be under /home: read-only there, and
        # those paths writable again through ReadWritePaths= (below).
        ProtectHome = if setupNeedsHome inst then "read-only" else true;
        # Follows the server's: with `serviceOverrides.PrivateTmp = false` (for a `directory`
        # or readWritePaths under /tmp, see assertions.nix) setup must see the same paths.
        PrivateTmp = inst.serviceOverrides.PrivateTmp or true;
        # /dev/null, /dev/zero, /dev/urandom, /dev/pts, /dev/shm: all the sandbox of the
        # init scripts grants (the server runs with the same).
        PrivateDevices = true;
        PrivateMounts = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        # Root with CAP_SYS_PTRACE still sees every process (the gate reads /proc/<pid> of
        # the init scripts, the launcher opens /proc/1/ns/mnt); `run` mounts a /proc of its
        # own for the init scripts. No ProcSubset=pid: setup writes /proc/sys/net.
        ProtectProc = "invisible";
        # /proc/sys/net: the per-interface forwarding sysctls of the veth.
        ProtectKernelTunables = false;
        # The network namespace, and for `run` (init scripts as root) a PID, mount and IPC
        # namespace.
        RestrictNamespaces = [
          "net"
          "mnt"
          "pid"
          "ipc"
        ];
        # systemd's default 0022, not the shared 0077: setup creates the parents of stateDir
        # (e.g. /var/lib/opencode/instance-state) with MkdirAll, and the instance user must
        # traverse them; the files that matter get explicit modes.
        UMask = "0022";
        # No MemoryDenyWriteExecute: the init scripts run the agent's toolchain (node, bun)
        # in this unit, and JITs need W+X pages.
      }
      # The init scripts run the agent's toolchain in this unit's cgroup: same bounds.
      // resourceLimits inst;
    };

  # The published port lives and dies with the server: started by it (WantedBy= the server,
  # not sockets.target) and stopped with it (PartOf=). Otherwise, after `systemctl stop
  # opencode-<name>`, the still-listening socket would start the proxy on the next
  # connection, and through its Requires= the server (and setup) again. PartOf= and not
  # BindsTo=: an automatic restart of the server (Restart=on-failure) leaves the socket be.
  proxySocket = name: inst: {
    description = "opencode instance ${name}: published port";
    wantedBy = [ "${unitOf name}.service" ];
    partOf = [ "${unitOf name}.service" ];
    socketConfig = {
      ListenStream = hostPort inst.listen.address inst.listen.port;
      FreeBind = mkDefault true;
    };
  };

  # The resolver of outboundAllowDomains: root in the host namespace (it queries the
  # upstreams from there), with its sockets inside the instance namespace; it fills the nft
  # sets before it answers. Bound to setup: a setup restart recreates the namespace, and the
  # resolver, which exits 75 when its namespace is replaced, follows it.
  dnsService = name: inst: {
    description = "opencode instance ${name}: DNS resolver for outboundAllowDomains";
    after = [ "${unitOf name}-setup.service" ];
    bindsTo = [ "${unitOf name}-setup.service" ];
    partOf = [ "${unitOf name}-setup.service" ];
    before = [ "${unitOf name}.service" ];
    wantedBy = [ "${unitOf name}.service" ];
    serviceConfig = {
      Type = "notify"; # READY=1 once both sockets serve inside the namespace
      ExecStart = "${launcherExe} dns --config ${cfg.specFiles.${name}}";
      Restart = mkDefault "always";
      RestartSec = mkDefault 1;
      RestartPreventExitStatus = [
        65
        77
      ]; # an invalid spec or a missing privilege: restarting cannot help
      # setns into the instance namespace needs CAP_SYS_ADMIN, the nft sets CAP_NET_ADMIN,
      # port 53 inside it CAP_NET_BIND_SERVICE.
      CapabilityBoundingSet = mkDefault [
        "CAP_SYS_ADMIN"
        "CAP_NET_ADMIN"
        "CAP_NET_BIND_SERVICE"
      ];
      RestrictAddressFamilies = mkBefore [
        "AF_UNIX"
        "AF_INET"
        "AF_INET6"
        "AF_NETLINK"
      ];
      # setns is in @process; the launcher's calls for its start-up probe of Landlock and
      # seccomp (the same checks as every subcommand).
      SystemCallFilter = [
        "@system-service"
        "~@resources"
      ]
      ++ launcherSyscalls;
    }
    // hardening {
      RestrictNamespaces = [ "net" ];
      MemoryDenyWriteExecute = true;
      PrivateMounts = true;
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
      ExecStart = "${config.systemd.package}/lib/systemd/systemd-socket-proxyd ${proxyTarget inst.listen.port}";
      NetworkNamespacePath = "/run/netns/${netnsOf name}";
      DynamicUser = true;
      RestrictAddressFamilies = mkBefore [
        "AF_UNIX"
        "AF_INET"
        "AF_INET6"
      ];
      # It only connects to the server on the namespace's loopback (the published socket
      # comes from the socket unit).
      IPAddressDeny = mkDefault "any";
      IPAddressAllow = mkDefault "localhost";
      SystemCallFilter = [
        "@system-service"
        "~@privileged @resources"
      ];
    }
    // hardening {
      CapabilityBoundingSet = "";
      MemoryDenyWriteExecute = true;
      PrivateMounts = true;
      ProcSubset = "pid";
    };
  };

in
{
  config = mkIf cfg.enable {
    services.opencode.specs = lib.mapAttrs specOf enabled;
    services.opencode.specFiles = lib.mapAttrs checkedSpecOf enabled;

    environment.systemPackages = [ cfg.launcherPackage ];

    # `directory`, when createDirectory is on: created if missing, owned by the instance
    # user; the ":" prefixes make systemd-tmpfiles leave an existing one's mode and owner
    # alone (tmpfiles.d(5)).
    systemd.tmpfiles.settings."10-opencode" = lib.mapAttrs' (
      name: inst:
      lib.nameValuePair inst.directory {
        d = {
          mode = ":0750";
          user = ":${userOf name}";
          group = ":${userOf name}";
        };
      }
    ) (lib.filterAttrs (_: inst: inst.createDirectory) enabled);

    # What the setup unit writes must exist before its mount namespace is set up
    # (ReadWritePaths= of a missing path is dropped, and ProtectSystem=strict leaves setup
    # unable to create it): the host directories, and each stateDir (":" again: an existing
    # one keeps its mode and owner; setup makes it 0700 for the instance user anyway).
    systemd.tmpfiles.settings."10-opencode-setup" =
      lib.genAttrs setupRwHostDirs (dir: {
        d = {
          mode = setupHostDirModes.${dir} or "0755";
          user = "root";
          group = "root";
        };
      })
      // lib.mapAttrs' (
        name: inst:
        lib.nameValuePair inst.stateDir {
          d = {
            mode = ":0700";
            user = ":${userOf name}";
            group = ":${userOf name}";
          };
        }
      ) enabled;

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
      (lib.mapAttrs' (name: inst: lib.nameValuePair "${unitOf name}-dns" (dnsService name inst)) withDomains)
    ];
    systemd.sockets = lib.mapAttrs' (
      name: inst: lib.nameValuePair "${unitOf name}-proxy" (proxySocket name inst)
    ) isolated;

    networking.firewall.allowedTCPPorts = lib.mapAttrsToList (_: inst: inst.listen.port) (
      lib.filterAttrs (_: inst: inst.openFirewall) enabled
    );

    # With `networking.firewall.filterForward = true` NixOS's forward chain drops what it does
    # not accept, and an accept in our own table cannot override a drop in another base
    # chain. Instance egress is already filtered inside each netns, so accepting what comes
    # from the instance veths here opens nothing the instance policy does not allow.
    networking.firewall.extraForwardRules = mkIf (anyIsolated && config.networking.nftables.enable) ''
      iifname "oc-*" accept
    '';

    boot.kernel.sysctl = mkIf anyIsolated {
      # No host-wide ip_forward: setup turns forwarding on per interface (the veth and the
      # interfaces replies arrive on) behind a forward table of its own (netpolicy/doc.go).
      # nftables `log` inside a non-initial network namespace is silent without this; it is
      # what makes `opencode-<name>-blocked:` lines appear in the kernel log.
      "net.netfilter.nf_log_all_netns" = mkDefault 1;
    };
  };
}
