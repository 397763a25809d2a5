# NixOS VM tests of ocnix, one scenario per file (pkgs.testers.runNixOSTest). They need a
# NixOS (or Linux + Nix) host with KVM and are NOT run in ocnix's CI; see docs/nixos.md.
#   nix build .#nixosTests.postgres-socket
{ pkgs, ocnixModule }:
let
  common = import ./common.nix { inherit pkgs ocnixModule; };
  load = file: import file { inherit pkgs common; };
in
{
  postgres-socket = load ./postgres-socket.nix;
  network-isolation = load ./network-isolation.nix;
  sandbox-paths = load ./sandbox-paths.nix;
  multi-instance = load ./multi-instance.nix;
  setup-idempotence = load ./setup-idempotence.nix;
  hooks = load ./hooks.nix;
  bad-config = import ./bad-config.nix { inherit pkgs ocnixModule; };
}
