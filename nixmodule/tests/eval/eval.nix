# Evaluates services.opencode with the real nixpkgs `lib.evalModules`, stubbed NixOS options
# (the systemd tier's, systemdtests/nix/stubs.nix, which keep NixOS's unit-option merge
# rules: one set of stand-ins for both) and a pkgs stand-in (./pkgs-stub.nix). Returns the evaluated `config` plus
# the failed assertion messages and the warnings.
{
  lib,
  configuration,
  module ? ../../default.nix,
}:
let
  pkgs = import ./pkgs-stub.nix lib;
  eval = lib.evalModules {
    specialArgs = {
      modulesPath = "/nonexistent";
    };
    modules = [
      ../../../systemdtests/nix/stubs.nix
      module
      configuration
      { _module.args = { inherit pkgs; }; }
    ];
  };
  cfg = eval.config;
in
{
  config = cfg;
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  inherit (cfg) warnings;
}
