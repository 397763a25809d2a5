{ lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;

  # Environment values: strings, plus what reads naturally as one (a path, a package, an int).
  envValue = types.coercedTo (types.oneOf [
    types.int
    types.path
    types.package
  ]) (v: if builtins.isInt v then toString v else "${v}") types.str;

  instanceModule =
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Whether to run this instance. A disabled instance generates no units, no user and
            no spec; its state directory is left on disk.
          '';
        };

        directory = mkOption {
          type = types.str;
          example = "/srv/my-project";
          description = ''
            Project working directory: the server's cwd and a read-write path of the sandbox.
            It must be an absolute path, and the user `opencode-<name>` must be able to write
            to it. With `createDirectory` (the default) a missing directory is created, owned
            by that user; an existing one is never chowned or chmodded by the module.
          '';
        };

        createDirectory = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = ''
            Whether to create `directory` when it is missing, with mode 0750 and owned by
            `opencode-<name>`, through `systemd.tmpfiles` (also at boot). The rule only
            creates: the `:` prefixes of its mode and owner leave an existing directory
            exactly as it is. Missing parents are created as root, mode 0755. Set it to
            `false` when the directory is provisioned elsewhere (a mount, a clone by another
            unit); the setup unit then fails with a message naming this option while the
            directory is missing.
          '';
        };

        stateDir = mkOption {
          type = types.str;
          default = "/var/lib/opencode/instance-state/${name}";
          defaultText = lib.literalExpression ''"/var/lib/opencode/instance-state/''${name}"'';
          description = ''
            Runtime state of the instance and the home directory of its user: opencode's data,
            config, cache and temporary files, and the init-script stamps. Created by the
            setup unit with mode 0700. Changing it starts the instance with fresh state; the
            old directory is not moved or removed.
          '';
        };

        listen = {
          address = mkOption {
            type = types.str;
            default = "127.0.0.1";
            example = "0.0.0.0";
            description = ''
              Address the server listens on. With `networkIsolation.enable` this is the
              address published on the host by the `opencode-<name>-proxy` socket, and must
              be an IP address.
            '';
          };
          port = mkOption {
            type = types.port;
            default = 8080;
            example = 8787;
            description = ''
              TCP port the server listens on. Each enabled instance needs its own port.
            '';
          };
        };

        openFirewall = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to open `listen.port` in the firewall.";
        };

        environment = mkOption {
          type = types.attrsOf envValue;
          default = { };
          example = lib.literalExpression ''{ OPENCODE_DISABLE_MODELS_FETCH = "1"; }'';
          description = ''
            Environment variables for the server and the init scripts. The values end up in
            the world-readable Nix store: put secrets in `environmentFile`.
          '';
        };

        environmentFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/secrets/opencode-my-project.env";
          description = ''
            Path of a file with secret environment variables, in systemd `EnvironmentFile=`
            syntax. It can stay root-only (0400): the server's unit passes it with
            `LoadCredential=environmentFile:<path>`, so the launcher, running as
            `opencode-<name>`, reads systemd's copy in
            `/run/credentials/opencode-<name>.service/environmentFile` (the spec keeps your
            path; the launcher prefers `$CREDENTIALS_DIRECTORY/environmentFile` when the unit
            has it); the setup unit (root) reads your path directly for the init scripts. It is never copied into the Nix store, the logs or
            `explain` output.
          '';
        };

        path = mkOption {
          type = types.listOf types.package;
          default = [ ];
          example = lib.literalExpression "[ pkgs.nodejs pkgs.python3 ]";
          description = ''
            Extra packages whose `bin` directories are put on the server's `PATH` (and made
            executable in the sandbox), ahead of `toolset`.
          '';
        };

        toolset = mkOption {
          type = types.listOf types.package;
          default = with pkgs; [
            ripgrep
            git
            coreutils
            findutils
            gnugrep
            gnused
            gawk
            diffutils
            bashInteractive
            gnutar
            gzip
            which
          ];
          defaultText = lib.literalExpression
            "with pkgs; [ ripgrep git coreutils findutils gnugrep gnused gawk diffutils bashInteractive gnutar gzip which ]";
          example = lib.literalExpression "[ pkgs.ripgrep pkgs.git pkgs.coreutils pkgs.jq ]";
          description = ''
            The tools the agent's own tools need, put on `PATH` after `path`. opencode's grep
            and glob tools run `rg` from `PATH` (without it, opencode tries to download
            ripgrep at run time, which the sandbox is there to stop), its bash tool runs the
            usual coreutils, and it runs `git` in git projects. Extend it with
            `toolset = options…default ++ [ … ]`, or more simply by adding packages to `path`;
            replace it (even with `[ ]`) to ship exactly what you choose.
          '';
        };

        logLevel = mkOption {
          type = types.nullOr (
            types.enum [
              "debug"
              "info"
              "warn"
              "error"
            ]
          );
          default = null;
          example = "debug";
          description = "Log level of the server. `null` keeps opencode's default (info).";
        };

        model = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "claude-sonnet-4-5";
          description = ''
            Model identifier. The launcher folds it into opencode.json as
            `"model": "<provider>/<model>"`, or as given when `provider` is null (then write
            it as `"provider/model"`). Do not also set `model` in `opencodeCfg`.
          '';
        };

        provider = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "anthropic";
          description = "Provider identifier, used together with `model`.";
        };

        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "--print-logs" ];
          description = "Extra arguments appended to `opencode serve`.";
        };

        sandbox = {
          readWritePaths = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "/srv/shared-cache" ];
            description = ''
              Extra absolute paths the instance may read and write, besides `directory` and
              `stateDir`. Also added to the unit's `ReadWritePaths=`.
            '';
          };
          readOnlyPaths = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "/srv/reference-docs" ];
            description = "Extra absolute paths the instance may read (and execute from).";
          };
          unixSockets.allow = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "/run/postgresql/.s.PGSQL.5432" ];
            description = ''
              Unix sockets the instance may connect to. An entry is either a socket file (that
              socket exactly) or a directory (any socket beneath it). Every other pathname
              socket is refused with `EACCES`, except sockets the instance created inside its
              own read-write paths.
            '';
          };
          allowBindPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
            example = [ 5173 ];
            description = ''
              Extra fixed TCP ports the instance may bind, besides `listen.port` and ephemeral
              ports (which are always allowed, so test suites with throwaway servers work).
            '';
          };
        };

        networkIsolation = {
          enable = mkEnableOption ''
            a private network namespace for this instance, whose outbound traffic is limited to
            `outboundAllowCidrs` (everything else is logged with the prefix
            `opencode-<name>-blocked: ` and dropped). The server is then published on the host
            at `listen.address:listen.port` by a socket-activated `systemd-socket-proxyd`'';

          outboundAllowCidrs = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [
              "10.10.0.0/16"
              "2001:db8::/32"
            ];
            description = ''
              Destinations the instance may reach, as IPv4 or IPv6 CIDRs (`address/prefix`).
              Loopback and established traffic are always allowed. The resolvers in
              `nameservers` need to be covered too, or DNS will not work.
            '';
          };

          outboundAllowDomains = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [
              "api.anthropic.com"
              "*.githubusercontent.com"
              "registry.npmjs.org:443"
            ];
            description = ''
              Host names the instance may reach, beside `outboundAllowCidrs`: exact names,
              `*.` wildcards (any name below the suffix, not the suffix itself) and an optional
              `:port`. A name without a port allows TCP and UDP to 443 and 80 only. With any
              name set, DNS inside the namespace goes only to the instance's resolver
              (`opencode-<name>-dns.service`, `opencode-launcher dns`), which answers only
              these names, forwards them to `nameservers` (or the host's resolvers) from the
              host namespace, and opens each answered address and port in the namespace's
              filter for the record's TTL (at least 60 s, at most 1 h). Answers pointing at
              loopback, link-local, the host itself or another instance are refused.
            '';
          };

          subnet = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "10.231.0.4/30";
            description = ''
              IPv4 /30 for the veth pair between the host and the instance. `null` derives a
              deterministic, collision-free subnet from the launcher's pool.
            '';
          };

          nameservers = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "10.10.0.53" ];
            description = ''
              Resolvers written to the namespace's `resolv.conf`
              (`/etc/netns/opencode-<name>/resolv.conf`, bind-mounted over `/etc/resolv.conf`
              in the unit). Empty lets the launcher derive them from the host's
              `/etc/resolv.conf` at each setup. With `outboundAllowDomains` they are instead the
              upstreams of the instance's resolver, queried from the host namespace (so they need
              no CIDR, and a loopback stub such as 127.0.0.53 works). When a setup reload (after
              an nftables reload) changes the file, the server is restarted so that it sees the
              new one.
            '';
          };
        };

        preInitScript = mkOption {
          type = types.nullOr (types.either types.path types.lines);
          default = null;
          example = lib.literalExpression ''
            '''
              git -C /srv/my-project pull --ff-only
            '''
          '';
          description = ''
            Script that the setup unit runs before its own setup steps, as the instance user,
            inside the instance's sandbox. Either the path of an executable (a Nix path, or a
            single-line string starting with `/` and without spaces), or shell code, which is
            wrapped into a bash script with `set -euo pipefail`. It runs again only when its
            content changes or its last run failed; a failure keeps the server down.
          '';
        };

        postInitScript = mkOption {
          type = types.nullOr (types.either types.path types.lines);
          default = null;
          description = ''
            Script that the setup unit runs after its own setup steps. Same forms and rules as
            `preInitScript`.
          '';
        };

        resources = {
          memoryMax = mkOption {
            type = types.nullOr types.str;
            default = "4G";
            example = "16G";
            description = ''
              Hard memory limit of the instance (systemd `MemoryMax=` on its server and setup
              units): the server, every command the agent runs and the init scripts together.
              Past it the kernel's OOM killer ends processes of this instance only, so one
              runaway agent cannot take the host's memory. opencode itself needs 300–950 MB;
              the rest is for what the agent builds and tests. `null` sets no limit.
            '';
          };
          tasksMax = mkOption {
            type = types.nullOr types.ints.positive;
            default = 1024;
            example = 4096;
            description = ''
              Maximum number of tasks (processes and threads) of the instance (systemd
              `TasksMax=`): a fork bomb run by the agent stops there instead of exhausting the
              host's pid space. opencode alone runs about 10 threads; parallel builds and test
              runners need more. `null` leaves systemd's default (15% of the host's pids).
            '';
          };
          cpuWeight = mkOption {
            type = types.nullOr (types.ints.between 1 10000);
            default = 50;
            example = 100;
            description = ''
              CPU weight of the instance (systemd `CPUWeight=`, default of other services: 100).
              It only matters under contention: a busy agent then gets half the share of a
              system service, so the host stays responsive. `null` leaves systemd's default.
            '';
          };
        };

        initScriptTimeout = mkOption {
          type = types.ints.positive;
          default = 300;
          description = "Timeout in seconds for each of `preInitScript` and `postInitScript`.";
        };

        opencodeCfg = mkOption {
          type = types.listOf types.deferredModule;
          default = [ ];
          example = lib.literalExpression ''
            [
              { permission.webfetch = "deny"; }
              ({ lib, ... }: { autoupdate = lib.mkForce "notify"; })
              ({ pkgs, ... }: { formatter.nixfmt.command = [ "''${pkgs.nixfmt}/bin/nixfmt" ]; })
            ]
          '';
          description = ''
            opencode.json content, as a list of modules evaluated together with
            `lib.evalModules` over a free-form JSON type, so that `lib.mkDefault`,
            `lib.mkForce` and friends work across modules. Modules get `lib` and the host's
            `pkgs` as arguments. The result is the spec's
            `opencodeConfig`. The launcher lays it over ocnix's defaults (`"$schema"`,
            `autoupdate = false`, `share = "disabled"`) and folds in `model`/`provider`; set
            the model in one place only.
          '';
        };

        serviceOverrides = mkOption {
          type = types.attrs;
          default = { };
          example = {
            ProtectHome = "read-only";
            MemoryMax = "4G";
          };
          description = ''
            `serviceConfig` of `opencode-<name>.service`, merged last: use it to relax or
            extend the hardening, or to set resource limits.
          '';
        };
      };
    };
in
{
  options.services.opencode = {
    enable = mkEnableOption "opencode servers, one isolated instance per `services.opencode.instances` entry";

    package = lib.mkPackageOption pkgs "opencode" { };

    launcherPackage = mkOption {
      type = types.package;
      default =
        pkgs.opencode-launcher or (throw ''
          services.opencode.launcherPackage has no default here: import the module through the
          ocnix flake (`ocnix.nixosModules.opencode`), which sets it, add the flake's overlay
          (`ocnix.overlays.default`), or set `services.opencode.launcherPackage` yourself.
        '');
      defaultText = lib.literalExpression "ocnix.packages.\${system}.opencode-launcher";
      description = ''
        The `opencode-launcher` package. It runs every instance, and `opencode-launcher check`
        validates each instance spec at build time.
      '';
    };

    specs = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      default = { };
      internal = true;
      description = ''
        The instance spec (the JSON the launcher reads) of each enabled instance, as Nix
        values. Set by the module, for tests and inspection; the checked file is at
        `/etc/ocnix/instances/<name>.json`.
      '';
    };

    specFiles = mkOption {
      type = types.attrsOf types.package;
      default = { };
      internal = true;
      description = ''
        The checked instance spec file (a derivation that runs `opencode-launcher check`) of
        each enabled instance. Set by the module; used by the units, `/etc/ocnix/instances`
        and the tests.
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceModule);
      default = { };
      example = lib.literalExpression ''
        {
          my-project = {
            directory = "/srv/my-project";
            listen.port = 8787;
          };
        }
      '';
      description = ''
        opencode server instances, like virtual hosts. Each enabled instance `<name>` gets
        the units `opencode-<name>.service` and `opencode-<name>-setup.service`, the system
        user `opencode-<name>` and its state in `stateDir`. The name must make a valid user
        name: lower case letters, digits, `_` and `-`, starting with a letter or digit, at
        most 23 characters.
      '';
    };
  };
}
