# services.opencode: many isolated opencode servers on one host, like virtual hosts.
# Import through the ocnix flake (`ocnix.nixosModules.opencode`), which also sets
# `services.opencode.launcherPackage`. Options: ./options.nix; units: ./service.nix, with
# the hardening they share in ./hardening.nix; assertions and warnings: ./assertions.nix;
# the instance spec (the launcher's contract): ./spec.nix.
{ ... }:
{
  imports = [
    ./options.nix
    ./service.nix
    ./assertions.nix
  ];

  # No meta.doc: NixOS checks every manual chapter's ids against nixpkgs'
  # nixos/doc/manual/redirects.json, which cannot list an out-of-tree module's, so a meta.doc
  # here stops `nixos-rebuild` on every host that builds the manual (nixpkgs issue 412451).
  # The documentation is docs/nixos.md. No nixpkgs maintainer entries exist for ocnix yet;
  # its issue tracker is the contact.
  meta.maintainers = [ ];
}
