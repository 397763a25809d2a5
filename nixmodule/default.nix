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
    # The NixOS manual's chapter for this module. A short file in the manual's Markdown
    # dialect (every heading has an id): NixOS renders the meta.doc of every module of a
    # system into its manual, and docs/nixos.md is not written for that renderer.
    doc = ./doc.md;
    # No nixpkgs maintainer entries exist for ocnix yet; its issue tracker is the contact.
    maintainers = [ ];
  };
}
