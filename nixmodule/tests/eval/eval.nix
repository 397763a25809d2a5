# Evaluates services.opencode with the real nixpkgs `lib.evalModules`, stubbed NixOS options
# (./stubs.nix) and a pkgs stand-in (./pkgs-stub.nix). Returns the evaluated `config` plus
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
      ./stubs.nix
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
