{
  description = "ocnix: many isolated opencode servers on one NixOS host, like virtual hosts";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # Linux only: Landlock, seccomp and network namespaces.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The launcher's Go sources: the repository minus what does not affect the binary, so
      # that editing the module, the VM tests or the docs does not rebuild it.
      launcherSrc = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.difference ./. (
          lib.fileset.unions (
            map lib.fileset.maybeMissing [
              ./flake.nix
              ./flake.lock
              ./nixmodule
              ./vmtests
              ./docs
              ./examples
              ./README.md
              ./node_modules
              ./bin
            ]
          )
        );
      };

      # A constant, not the commit: the version is part of the launcher's store path, which is
      # in every unit's ExecStart, so a commit-derived version would restart every instance on
      # `nixos-rebuild switch` after any ocnix commit, even a docs change. The Makefile reads
      # the same file.
      version = lib.fileContents ./VERSION;

      # go.mod asks for Go 1.26. An older buildGoModule would not fail clearly: with
      # GOTOOLCHAIN=local it stops with "go.mod requires go >= 1.26.0", far from the cause.
      buildGoModuleFor =
        pkgs:
        if pkgs ? go_1_26 && pkgs ? buildGo126Module then
          pkgs.buildGo126Module
        else if pkgs ? go && lib.versionAtLeast pkgs.go.version "1.26" then
          pkgs.buildGoModule
        else
          throw ''
            ocnix: opencode-launcher needs Go 1.26 (go.mod), but this nixpkgs (${lib.version or "unknown"})
            has neither go_1_26/buildGo126Module nor a default go of 1.26 or newer (it has
            ${pkgs.go.version or "no go"}). Use a newer nixpkgs for ocnix
            (`inputs.ocnix.inputs.nixpkgs.follows` pointing to nixos-unstable or a release with
            go_1_26), or set `services.opencode.launcherPackage` to a launcher built elsewhere.
          '';

      goFor = pkgs: pkgs.go_1_26 or (if lib.versionAtLeast pkgs.go.version "1.26" then pkgs.go else null);

      mkLauncher =
        pkgs:
        buildGoModuleFor pkgs {
          pname = "opencode-launcher";
          inherit version;
          src = launcherSrc;
          subPackages = [ "cmd/opencode-launcher" ];

          # The NAR hash of `go mod vendor` for go.mod/go.sum. CI recomputes it
          # (scripts/check-vendor-hash.sh) and names the new value when go.sum changes;
          # keep it on this one line, which the script reads.
          vendorHash = "sha256-0SBUJKh63WwW4yJF+1h1V4azU5uT2NmwtBej4zraoT0=";

          # libseccomp-golang is cgo.
          env.CGO_ENABLED = 1;
          nativeBuildInputs = [ pkgs.pkg-config ];
          buildInputs = [ pkgs.libseccomp ];
          ldflags = [
            "-s"
            "-w"
            "-X github.com/ocnix/ocnix/launcher.Version=${version}"
          ];

          meta = {
            description = "Runs one sandboxed opencode server (Landlock, seccomp, netns) from an ocnix instance spec";
            mainProgram = "opencode-launcher";
            platforms = lib.platforms.linux;
          };
        };
    in
    {
      packages = forAllSystems (pkgs: rec {
        opencode-launcher = mkLauncher pkgs;
        default = opencode-launcher;
      });

      overlays.default = final: _prev: { opencode-launcher = mkLauncher final; };

      nixosModules = {
        # The module, with `services.opencode.launcherPackage` defaulting to this flake's
        # launcher (built with this flake's nixpkgs on the listed systems, else with the
        # host's pkgs).
        opencode =
          { lib, pkgs, ... }:
          {
            _file = "${self}/flake.nix#nixosModules.opencode";
            imports = [ ./nixmodule ];
            services.opencode.launcherPackage = lib.mkDefault (
              self.packages.${pkgs.stdenv.hostPlatform.system}.opencode-launcher or (mkLauncher pkgs)
            );
          };
        default = self.nixosModules.opencode;
      };

      # `nix build .#nixosTests.postgres-socket` (the NixOS VM tests need KVM).
      legacyPackages = forAllSystems (pkgs: {
        nixosTests = import ./vmtests {
          inherit pkgs;
          ocnixModule = self.nixosModules.opencode;
        };
      });

      checks = forAllSystems (
        pkgs:
        self.legacyPackages.${pkgs.stdenv.hostPlatform.system}.nixosTests
        // {
          opencode-launcher = self.packages.${pkgs.stdenv.hostPlatform.system}.opencode-launcher;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (
              if goFor pkgs != null then
                goFor pkgs
              else
                throw "ocnix devShell: this nixpkgs has no Go 1.26 (go_1_26), which go.mod needs"
            )
            pkgs.gopls
            pkgs.pkg-config
            pkgs.libseccomp
            pkgs.nftables
            pkgs.iproute2
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree or pkgs.nixfmt-rfc-style);
    };
}
