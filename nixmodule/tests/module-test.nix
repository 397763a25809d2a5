# Evaluation tests of the NixOS module: real nixpkgs `lib.evalModules`, stubbed NixOS options
# (./eval). Evaluates to the list of failing cases; ./eval.sh requires it to be empty:
#   nix-instantiate --eval --strict --json nixmodule/tests/module-test.nix --arg lib 'import <nixpkgs.lib>/lib'
{ lib }:
let
  ev = configuration: import ./eval/eval.nix { inherit lib configuration; };

  # One configuration: the instances given, the nftables firewall on.
  withInstances = instances: {
    services.opencode = {
      enable = true;
      inherit instances;
    };
    networking.nftables.enable = true;
  };
  evI = instances: ev (withInstances instances);

  plain = {
    directory = "/srv/p";
    listen.port = 8787;
  };
  isolatedInst = plain // {
    networkIsolation = {
      enable = true;
      outboundAllowCidrs = [ "10.10.0.0/16" ];
    };
  };

  svc = r: name: r.config.systemd.services.${name};
  sc = r: name: (svc r name).serviceConfig;
  asList = v: if builtins.isList v then v else [ v ];

  hasInfixIn = needle: lib.any (lib.hasInfix needle);
  noneHas = needle: xs: !(hasInfixIn needle xs);

  # [ name ] when not ok: the list of failures is the test result.
  check = name: ok: if ok then [ ] else [ name ];
  # Every part of a case; the case's name prefixes each failing part.
  caseOf = name: parts: map (p: "${name}: ${p}") (lib.concatLists parts);

  seed = ev (
    { pkgs, ... }:
    {
      services.opencode = {
        enable = true;
        instances = {
          my-project = {
            directory = "/srv/my-project";
            listen.port = 8787;
            environmentFile = "/run/secrets/opencode-my-project.env";
          };
          db-project = {
            directory = "/srv/db-project";
            listen.port = 8788;
            path = [ pkgs.postgresql ];
            sandbox.unixSockets.allow = [ "/run/postgresql/.s.PGSQL.5432" ];
          };
          restricted = {
            directory = "/srv/restricted";
            listen.port = 8789;
            networkIsolation = {
              enable = true;
              outboundAllowCidrs = [ "10.10.0.0/16" ];
            };
          };
        };
      };
      networking.nftables.enable = true;
    }
  );

  # Forces every unit setting, so that nothing in them fails evaluation unnoticed.
  forced = r: builtins.deepSeq [ r.config.systemd.services r.config.systemd.sockets r.config.systemd.tmpfiles.settings r.config.services.opencode.specs ] true;

  # --- 1. directory creation ---
  created = evI { p = plain; };
  unlimited = evI { p = plain // { resources.memoryMax = null; }; };
  overridden = evI { p = plain // { serviceOverrides.MemoryMax = "16G"; }; };
  notCreated = evI { p = plain // { createDirectory = false; }; };
  homeDir = evI { p = plain // { directory = "/home/alice/p"; }; };
  tmpShared = evI {
    p = plain // {
      directory = "/tmp/p";
      serviceOverrides.PrivateTmp = false;
    };
  };
  # serviceOverrides is the server's; the setup unit is loosened the NixOS way.
  setupOverridden = ev (
    withInstances { p = plain; }
    // {
      systemd.services.opencode-p-setup.serviceConfig.ProtectSystem = "full";
    }
  );
  sharedDir = evI {
    p = plain;
    q = plain // {
      listen.port = 8788;
    };
  };

  # --- 2-4. readiness, ordering, restarts ---
  iso = evI { p = isolatedInst; };
  domains = evI {
    p = lib.recursiveUpdate isolatedInst { networkIsolation.outboundAllowDomains = [ "api.anthropic.com" ]; };
  };
  plainR = evI { p = plain; };

  # --- 6. names and state directories ---
  clash = suffix: evI {
    a = plain;
    "a-${suffix}" = plain // {
      listen.port = 8788;
    };
  };
  stateShared = evI {
    a = plain // {
      stateDir = "/var/lib/oc/shared";
    };
    b = plain // {
      directory = "/srv/b";
      listen.port = 8788;
      stateDir = "/var/lib/oc/shared/";
    };
  };
  stateNested = evI {
    a = plain // {
      stateDir = "/var/lib/oc/a";
    };
    b = plain // {
      directory = "/srv/b";
      listen.port = 8788;
      stateDir = "/var/lib/oc/a/b";
    };
  };
  stateInOthersProject = evI {
    a = plain // {
      directory = "/srv/a";
    };
    b = plain // {
      directory = "/srv/b";
      listen.port = 8788;
      stateDir = "/srv/a/.state-b";
    };
  };
  stateApart = evI {
    a = plain // {
      stateDir = "/var/lib/oc/a";
    };
    ab = plain // {
      directory = "/srv/b";
      listen.port = 8788;
      stateDir = "/var/lib/oc/ab";
    };
  };

  # --- issue 16 point 4: settings that would do nothing ---
  netWithoutIso = evI {
    p = plain // {
      networkIsolation = {
        outboundAllowCidrs = [ "10.10.0.0/16" ];
        outboundAllowDomains = [ "api.anthropic.com" ];
        nameservers = [ "1.1.1.1" ];
        subnet = "10.231.0.4/30";
      };
    };
  };
  badDomains = evI {
    p = lib.recursiveUpdate isolatedInst {
      networkIsolation.outboundAllowDomains = [
        "api.anthropic.com"
        "https://example.com"
        "10.0.0.1"
        "intranet"
      ];
    };
  };
  dirNested = evI {
    outer = plain // {
      directory = "/srv/a";
    };
    inner = plain // {
      directory = "/srv/a/b/";
      listen.port = 8788;
    };
  };
  stateInTmp = evI { p = plain // { stateDir = "/tmp/oc-state"; }; };
  bindOther = evI {
    p = plain // {
      sandbox.allowBindPorts = [ 3000 8788 ];
    };
    q = plain // {
      directory = "/srv/q";
      listen.port = 8788;
    };
  };
  bindOwn = evI { p = plain // { sandbox.allowBindPorts = [ 3000 ]; }; };

  # --- issue 16 point 9: the opencode version ---
  withOpencode =
    pkg:
    ev {
      imports = [ (withInstances { p = plain; }) ];
      services.opencode.package = pkg;
    };
  stubOpencode =
    extra:
    {
      type = "derivation";
      name = "opencode";
      outPath = "/nix/store/22222222222222222222222222222222-opencode";
    }
    // extra;
  opencodeOld = withOpencode (stubOpencode { version = "1.17.4"; });
  opencodeNew = withOpencode (stubOpencode { version = "1.19.0"; });
  opencodePatch = withOpencode (stubOpencode { version = "1.18.40"; });
  opencodeNoVersion = withOpencode (stubOpencode { });

  # --- 7. PrivateTmp ---
  inTmp = evI {
    p = plain // {
      directory = "/tmp/proj";
      sandbox.readWritePaths = [ "/var/tmp/cache" ];
      sandbox.readOnlyPaths = [ "/tmp/ro" ];
    };
  };
  inTmpNoPrivate = evI {
    p = plain // {
      directory = "/tmp/proj";
      serviceOverrides.PrivateTmp = false;
    };
  };

  # --- 8. opencodeCfg with pkgs ---
  withPkgs = ev (
    { pkgs, ... }:
    withInstances {
      p = plain // {
        opencodeCfg = [
          (
            { pkgs, lib, ... }:
            {
              formatter.git.command = [ "${pkgs.git}/bin/git" ];
              share = lib.mkForce "manual";
            }
          )
        ];
      };
    }
  );

  # --- 10. conventions ---
  withEnv = evI {
    p = plain // {
      environmentFile = "/run/secrets/p.env";
    };
  };
  ownSystemd = ev {
    imports = [ (withInstances { p = isolatedInst; }) ];
    systemd.package = {
      type = "derivation";
      name = "my-systemd";
      outPath = "/nix/store/11111111111111111111111111111111-my-systemd";
      version = "256.10";
    };
  };
  noPrivatePIDs = evI { p = plain // { serviceOverrides.PrivatePIDs = false; }; };
in
lib.concatLists [
  (caseOf "seed examples" [
    (check "no failed assertions, got ${toString seed.failedAssertions}" (seed.failedAssertions == [ ]))
    (check "units" (
      lib.all (u: seed.config.systemd.services ? ${u}) [
        "opencode-my-project"
        "opencode-my-project-setup"
        "opencode-db-project"
        "opencode-restricted"
        "opencode-restricted-setup"
        "opencode-restricted-proxy"
      ]
    ))
    (check "proxy socket" (seed.config.systemd.sockets ? opencode-restricted-proxy))
    # Issue 16.3: the published port lives and dies with the server.
    (check "socket started by the server, not sockets.target" (
      seed.config.systemd.sockets.opencode-restricted-proxy.wantedBy == [ "opencode-restricted.service" ]
    ))
    (check "socket stopped with the server" (
      seed.config.systemd.sockets.opencode-restricted-proxy.partOf == [ "opencode-restricted.service" ]
    ))
    (check "every unit setting evaluates" (forced seed))
  ])

  (caseOf "1. createDirectory (default on): a tmpfiles rule that only creates" [
    (check "no failed assertions" (created.failedAssertions == [ ] && forced created))
    (check "rule" (
      created.config.systemd.tmpfiles.settings."10-opencode"."/srv/p".d == {
        mode = ":0750";
        user = ":opencode-p";
        group = ":opencode-p";
      }
    ))
    (check "setup ordered after tmpfiles-resetup" (
      builtins.elem "systemd-tmpfiles-resetup.service" (svc created "opencode-p-setup").after
    ))
    (check "setup checks the directory first" (
      hasInfixIn "if [ ! -d /srv/p ]" (sc created "opencode-p-setup").ExecStartPre
    ))
  ])
  (caseOf "1. createDirectory = false: no rule; the failure names the option" [
    (check "no rule" ((notCreated.config.systemd.tmpfiles.settings."10-opencode" or { }) == { }))
    (check "message says what to do" (
      hasInfixIn "set services.opencode.instances.p.createDirectory = true" (sc notCreated "opencode-p-setup").ExecStartPre
      && hasInfixIn "install -d -o opencode-p -g opencode-p -m 0750 /srv/p" (sc notCreated "opencode-p-setup").ExecStartPre
    ))
  ])
  (caseOf "1. two instances creating one directory" [
    (check "assertion names createDirectory" (
      hasInfixIn "`services.opencode.instances.p.createDirectory`: the instance(s) \"q\"" sharedDir.failedAssertions
    ))
  ])

  (caseOf "2. readiness fits in the start timeout" [
    (check "bounded by the clock" (
      hasInfixIn "deadline=$((SECONDS + 60))" (sc iso "opencode-p").ExecStartPost
    ))
    (check "non-fatal" (lib.all (lib.hasPrefix "-") (sc iso "opencode-p").ExecStartPost))
    # The peer guard resets the instance uid's own connections to its port.
    (check "as root, in the unit's sandbox (\"!\")" (lib.all (lib.hasPrefix "-!") (sc iso "opencode-p").ExecStartPost))
    # 60 s of polling, one last request of at most 2 s (curl -m 2), the preflight.
    (check "TimeoutStartSec ${toString ((sc iso "opencode-p").TimeoutStartSec or "unset")} > 60 + 2 + margin" (
      ((sc iso "opencode-p").TimeoutStartSec or 0) >= 90
    ))
    (check "curl per request bounded" (hasInfixIn "curl -s -o /dev/null -m 2" (sc iso "opencode-p").ExecStartPost))
  ])

  (caseOf "3. isolated setup: network-online.target, not network.target" [
    (check "after network-online" (builtins.elem "network-online.target" (svc iso "opencode-p-setup").after))
    (check "wants network-online" ((svc iso "opencode-p-setup").wants == [ "network-online.target" ]))
    (check "after nftables" (builtins.elem "nftables.service" (svc iso "opencode-p-setup").after))
    (check "reload propagated from nftables" (
      (svc iso "opencode-p-setup").unitConfig.ReloadPropagatedFrom == [ "nftables.service" ]
    ))
  ])
  (caseOf "3. non-isolated setup pulls in nothing" [
    (check "no wants" ((svc plainR "opencode-p-setup").wants == [ ]))
    # The peer guard registers every instance's port; stopping setup must take it back.
    (check "teardown on stop" (lib.hasInfix " teardown --config " (sc plainR "opencode-p-setup").ExecStop))
    (check "not after network-online" (!builtins.elem "network-online.target" (svc plainR "opencode-p-setup").after))
    # A firewall reload flushes the host ruleset, the peer guard with it: setup puts it back.
    (check "after nftables" (builtins.elem "nftables.service" (svc plainR "opencode-p-setup").after))
    (check "reload propagated from nftables" (
      (svc plainR "opencode-p-setup").unitConfig.ReloadPropagatedFrom == [ "nftables.service" ]
    ))
  ])
  (caseOf "3. resolv.conf replaced by rename reaches the server" [
    (check "bind-mounted" (
      builtins.elem "/etc/netns/opencode-p/resolv.conf:/etc/resolv.conf" (sc iso "opencode-p").BindReadOnlyPaths
    ))
    (check "reload compares what the server sees and restarts it" (
      lib.hasInfix "cmp -s /etc/netns/opencode-p/resolv.conf \"/proc/$pid/root/etc/resolv.conf\"" (sc iso "opencode-p-setup").ExecReload
      && lib.hasInfix "try-restart --no-block opencode-p.service" (sc iso "opencode-p-setup").ExecReload
    ))
    (check "not for a non-isolated instance" (noneHas "resolv.conf" [ (sc plainR "opencode-p-setup").ExecReload ]))
  ])

  (caseOf "4. restarts give up" [
    (check "start limit" (
      (svc iso "opencode-p").startLimitBurst == 5 && (svc iso "opencode-p").startLimitIntervalSec == 300
    ))
    # The limit must be reachable: 5 starts, 5 s apart, within the interval.
    (check "limit reachable with RestartSec" (
      (svc iso "opencode-p").startLimitBurst * (sc iso "opencode-p").RestartSec < (svc iso "opencode-p").startLimitIntervalSec
    ))
    (check "failed reload restarts setup" (
      lib.hasInfix "restart --no-block opencode-p-setup.service" (sc iso "opencode-p-setup").ExecReload
      && lib.hasInfix "exit 1" (sc iso "opencode-p-setup").ExecReload
    ))
  ])

  (caseOf "5. privileged preflight before the server" [
    (check "ExecStartPre" (
      (sc iso "opencode-p").ExecStartPre == [
        "+/nix/store/00000000000000000000000000000000-opencode-launcher/bin/opencode-launcher preflight --config /nix/store/00000000000000000000000000000000-opencode-p-spec-checked.json"
      ]
    ))
    (check "same spec as ExecStart" (
      lib.hasSuffix (lib.removePrefix "+/nix/store/00000000000000000000000000000000-opencode-launcher/bin/opencode-launcher preflight" (builtins.head (sc iso "opencode-p").ExecStartPre)) (sc iso "opencode-p").ExecStart
    ))
  ])

  (lib.concatMap (
    suffix:
    let
      r = clash suffix;
    in
    caseOf "6. instances a and a-${suffix}" [
      (check "assertion names both, got ${toString r.failedAssertions}" (
        hasInfixIn "`services.opencode.instances.a`: the instance(s) \"a-${suffix}\" would get the unit names" r.failedAssertions
      ))
    ]
  ) [ "setup" "proxy" "dns" ])
  (caseOf "6. shared stateDir" [
    (check "assertion on both, naming the other's option" (
      hasInfixIn "`services.opencode.instances.a.stateDir`: \"/var/lib/oc/shared\" is, contains or lies inside a path of another instance (`services.opencode.instances.b.stateDir`" stateShared.failedAssertions
      && hasInfixIn "`services.opencode.instances.b.stateDir`" stateShared.failedAssertions
    ))
  ])
  (caseOf "6. nested stateDir" [
    (check "assertion" (hasInfixIn "`services.opencode.instances.b.stateDir`: \"/var/lib/oc/a/b\"" stateNested.failedAssertions))
  ])
  (caseOf "6. stateDir inside another instance's directory" [
    (check "assertion" (
      hasInfixIn "(`services.opencode.instances.a.directory` is \"/srv/a\")" stateInOthersProject.failedAssertions
    ))
  ])
  (caseOf "6. a and ab: neighbours, not nested" [
    (check "no failed assertions, got ${toString stateApart.failedAssertions}" (stateApart.failedAssertions == [ ]))
  ])

  (caseOf "issue 16.4: networkIsolation settings while it is off" [
    (check "assertion names every ignored option, got ${toString netWithoutIso.failedAssertions}" (
      hasInfixIn "`services.opencode.instances.p.networkIsolation.outboundAllowCidrs`, `services.opencode.instances.p.networkIsolation.outboundAllowDomains`, `services.opencode.instances.p.networkIsolation.nameservers`, `services.opencode.instances.p.networkIsolation.subnet`: set while `services.opencode.instances.p.networkIsolation.enable` is false" netWithoutIso.failedAssertions
    ))
    (check "not when isolated" (iso.failedAssertions == [ ] && domains.failedAssertions == [ ]))
  ])
  (caseOf "issue 16.4: outboundAllowDomains syntax at evaluation" [
    (check "assertion lists the bad entries only, got ${toString badDomains.failedAssertions}" (
      hasInfixIn "`services.opencode.instances.p.networkIsolation.outboundAllowDomains`: not a host name the resolver can allow: \"https://example.com\", \"10.0.0.1\", \"intranet\"." badDomains.failedAssertions
    ))
  ])
  (caseOf "issue 16.4: a directory nested in another instance's" [
    (check "assertion on the inner one, got ${toString dirNested.failedAssertions}" (
      hasInfixIn "`services.opencode.instances.inner.directory`: \"/srv/a/b/\" lies inside the directory of \"outer\" (`services.opencode.instances.outer.directory` is \"/srv/a\")" dirNested.failedAssertions
    ))
    (check "only one assertion" (builtins.length dirNested.failedAssertions == 1))
    (check "a shared directory is not nested" (noneHas "lies inside the directory" (sharedDir.failedAssertions)))
  ])
  (caseOf "issue 16.4: stateDir under /tmp" [
    (check "assertion, got ${toString stateInTmp.failedAssertions}" (
      hasInfixIn "`services.opencode.instances.p.stateDir`: \"/tmp/oc-state\" is under /tmp or /var/tmp" stateInTmp.failedAssertions
    ))
  ])
  (caseOf "issue 16.4: allowBindPorts on another instance's listen.port" [
    (check "assertion, got ${toString bindOther.failedAssertions}" (
      hasInfixIn "`services.opencode.instances.p.sandbox.allowBindPorts`: 8788 is the listen.port of instance \"q\"" bindOther.failedAssertions
    ))
    (check "only that one" (builtins.length bindOther.failedAssertions == 1))
    (check "other ports are fine" (bindOwn.failedAssertions == [ ]))
  ])

  (caseOf "issue 16.9: opencode outside 1.18.x is refused at evaluation" [
    (check "1.17.4: assertion names services.opencode.package, got ${toString opencodeOld.failedAssertions}" (
      hasInfixIn "`services.opencode.package`: opencode 1.17.4 is not supported; this ocnix supports opencode 1.18.x (tested: 1.18.33)" opencodeOld.failedAssertions
    ))
    (check "and says how to pin" (hasInfixIn "Pin a known-good opencode" opencodeOld.failedAssertions))
    (check "1.19.0 too" (hasInfixIn "opencode 1.19.0 is not supported" opencodeNew.failedAssertions))
    (check "1.18.40 is fine" (opencodePatch.failedAssertions == [ ] && opencodePatch.warnings == [ ]))
    (check "the default (1.18.33) is fine" (created.failedAssertions == [ ]))
    (check "no version: a warning, not an assertion" (
      opencodeNoVersion.failedAssertions == [ ]
      && hasInfixIn "`services.opencode.package` (opencode) has no `version`" opencodeNoVersion.warnings
    ))
  ])

  (caseOf "7. paths under /tmp and /var/tmp warn" [
    (check "directory" (hasInfixIn "`services.opencode.instances.p.directory`: /tmp/proj is under /tmp" inTmp.warnings))
    (check "readWritePaths" (hasInfixIn "`services.opencode.instances.p.sandbox.readWritePaths`: /var/tmp/cache" inTmp.warnings))
    (check "readOnlyPaths" (hasInfixIn "`services.opencode.instances.p.sandbox.readOnlyPaths`: /tmp/ro" inTmp.warnings))
    (check "not with PrivateTmp = false" (noneHas "under /tmp" inTmpNoPrivate.warnings))
  ])

  (caseOf "8. opencodeCfg modules take pkgs" [
    (check "evaluates" (
      withPkgs.config.services.opencode.specs.p.opencodeConfig == {
        formatter.git.command = [ "/nix/store/00000000000000000000000000000000-git/bin/git" ];
        share = "manual";
      }
    ))
  ])

  (caseOf "10. environmentFile through LoadCredential, one spec per instance" [
    (check "LoadCredential under the launcher's id" (
      (sc withEnv "opencode-p").LoadCredential == [ "environmentFile:/run/secrets/p.env" ]
    ))
    (check "the spec keeps the original path" (
      withEnv.config.services.opencode.specs.p.environmentFile == "/run/secrets/p.env"
    ))
    (check "no second spec" (!(withEnv.config.services.opencode ? serviceSpecs)))
    (check "server, setup and /etc/ocnix run the same spec file" (
      let
        f = "${withEnv.config.services.opencode.specFiles.p}";
      in
      lib.hasSuffix "run --config ${f}" (sc withEnv "opencode-p").ExecStart
      && lib.hasSuffix "setup --config ${f}" (sc withEnv "opencode-p-setup").ExecStart
      && "${withEnv.config.environment.etc."ocnix/instances/p.json".source}" == f
    ))
    (check "no environmentFile: no LoadCredential" (
      !((sc plainR "opencode-p") ? LoadCredential)
      && lib.hasSuffix "opencode-p-spec-checked.json" (sc plainR "opencode-p").ExecStart
    ))
  ])
  (caseOf "forwarding: no host-wide ip_forward; NixOS's forward chain accepts the instance veths" [
    (check "no ip_forward sysctl" (!(iso.config.boot.kernel.sysctl ? "net.ipv4.ip_forward")))
    (check "nf_log_all_netns" (iso.config.boot.kernel.sysctl."net.netfilter.nf_log_all_netns" == 1))
    (check "extraForwardRules accepts oc-*" (lib.hasInfix ''iifname "oc-*" accept'' iso.config.networking.firewall.extraForwardRules))
    (check "no rule without isolated instances" (plainR.config.networking.firewall.extraForwardRules == ""))
  ])
  (caseOf "outboundAllowDomains: a resolver unit, wanted by the server" [
    (check "dns unit runs the launcher's resolver" (lib.hasInfix " dns --config " (sc domains "opencode-p-dns").ExecStart))
    (check "dns unit is Type=notify" ((sc domains "opencode-p-dns").Type == "notify"))
    (check "dns unit is bound to setup" ((svc domains "opencode-p-dns").bindsTo == [ "opencode-p-setup.service" ]))
    (check "server wants and follows the resolver" (
      lib.elem "opencode-p-dns.service" (svc domains "opencode-p").wants
      && lib.elem "opencode-p-dns.service" (svc domains "opencode-p").after
    ))
    (check "no dns unit without domains" (!(iso.config.systemd.services ? "opencode-p-dns")))
    (check "server wants no resolver without domains" ((svc iso "opencode-p").wants or [ ] == [ ]))
    (check "evaluates" (forced domains))
  ])
  # Issue 16 point 5: 0077 made what the agent writes unreadable to the instance's group,
  # which createDirectory's message suggests for sharing; 0027 lets the group read.
  (caseOf "UMask: the group may read what the agent writes" [
    (check "server UMask 0027, got ${toString ((sc created "opencode-p").UMask or "unset")}" (
      (sc created "opencode-p").UMask == "0027"
    ))
  ])
  (caseOf "resources: bounded by default, per unit, overridable" [
    (check "server defaults" (
      let
        c = sc created "opencode-p";
      in
      c.MemoryMax == "4G" && c.TasksMax == 1024 && c.CPUWeight == 50
    ))
    (check "setup (init scripts) bounded too" ((sc created "opencode-p-setup").TasksMax == 1024))
    (check "null leaves systemd's default" (
      !((sc unlimited "opencode-p") ? MemoryMax) && (sc unlimited "opencode-p").TasksMax == 1024
    ))
    (check "serviceOverrides wins" ((sc overridden "opencode-p").MemoryMax == "16G"))
  ])
  (caseOf "setup: a mount namespace of its own, writable only where setup writes" [
    (check "ProtectSystem strict, ProtectHome, PrivateTmp, PrivateDevices" (
      let
        c = sc created "opencode-p-setup";
      in
      c.ProtectSystem == "strict" && c.ProtectHome == true && c.PrivateTmp && c.PrivateDevices
    ))
    (check "writes the host directories and its own paths" (
      let
        rw = (sc created "opencode-p-setup").ReadWritePaths;
      in
      lib.all (p: builtins.elem p rw) [
        "-/run/opencode"
        "-/run/ocnix"
        "-/var/lib/opencode"
        "-/etc/netns"
        "-/srv/p"
        "-/var/lib/opencode/instance-state/p"
      ]
    ))
    # The launcher pins the namespace in PID 1's mount namespace; a pin made in the unit's
    # own would be seen by no one else, so there it must fail (read-only).
    (check "/run/netns not in ReadWritePaths" (noneHas "/run/netns" (sc created "opencode-p-setup").ReadWritePaths))
    (check "tmpfiles makes the host directories and stateDir" (
      let
        t = created.config.systemd.tmpfiles.settings."10-opencode-setup";
      in
      t."/run/opencode".d.mode == "0700"
      && t."/etc/netns".d.mode == "0755"
      && t."/var/lib/opencode/instance-state/p".d.user == ":opencode-p"
    ))
    (check "a directory under /home: ProtectHome read-only" (
      (sc homeDir "opencode-p-setup").ProtectHome == "read-only"
    ))
    (check "systemd.services.<unit>.serviceConfig wins" ((sc setupOverridden "opencode-p-setup").ProtectSystem == "full"))
    (check "umask stays 0022" ((sc created "opencode-p-setup").UMask == "0022"))
    (check "PrivateTmp follows the server's serviceOverrides" (
      (sc tmpShared "opencode-p-setup").PrivateTmp == false
    ))
  ])
  (caseOf "10. conventions" [
    (check "command is <package>/bin/opencode" (
      created.config.services.opencode.specs.p.command == [ "/nix/store/00000000000000000000000000000000-opencode/bin/opencode" ]
    ))
    (check "launcher through lib.getExe" (
      lib.hasPrefix "/nix/store/00000000000000000000000000000000-opencode-launcher/bin/opencode-launcher run " (sc created "opencode-p").ExecStart
    ))
    (check "socket-proxyd from config.systemd.package" (
      lib.hasPrefix "/nix/store/11111111111111111111111111111111-my-systemd/lib/systemd/systemd-socket-proxyd " (sc ownSystemd "opencode-p-proxy").ExecStart
    ))
    # An out-of-tree meta.doc stops nixos-rebuild where the manual is built (its ids are
    # not in nixpkgs' redirects.json; nixpkgs issue 412451).
    (check "no meta.doc" (!(created.config.meta ? doc)))
    # Issue 15: the server's PID namespace under systemd (257+), overridable, and left out
    # where systemd would not know the key.
    (check "PrivatePIDs on the server with systemd 258" ((sc created "opencode-p").PrivatePIDs or null == true))
    (check "no PrivatePIDs on setup (root; run makes its own)" (!((sc created "opencode-p-setup") ? PrivatePIDs)))
    (check "no PrivatePIDs with systemd 256" (!((sc ownSystemd "opencode-p") ? PrivatePIDs)))
    (check "serviceOverrides.PrivatePIDs wins" ((sc noPrivatePIDs "opencode-p").PrivatePIDs == false))
    (check "meta.maintainers" (created.config.meta ? maintainers))
  ])
]
