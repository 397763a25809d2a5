# services.opencode: many isolated opencode servers on one host, like virtual hosts.
# Import through the ocnix flake (`ocnix.nixosModules.opencode`), which also sets
# `services.opencode.launcherPackage`. Options: ./options.nix; units: ./service.nix;
# the instance spec (the launcher's contract): ./spec.nix.
{ ... }:
{
  imports = [
    ./options.nix
    ./service.nix
  ];
}
