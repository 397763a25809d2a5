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
  ])
]
