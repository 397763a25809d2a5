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

  meta = {
    # The NixOS manual's chapter for this module.
    doc = ../docs/nixos.md;
    # No nixpkgs maintainer entries exist for ocnix yet; its issue tracker is the contact.
    maintainers = [ ];
  };
}
