# Stand-ins for the NixOS options that services.opencode writes to or reads, so that the
# module can be evaluated with the real nixpkgs `lib.evalModules` without the rest of nixpkgs.
# Declared options keep their NixOS merge semantics (lists concatenate, attrsets merge);
# anything else lands in a freeform catch-all. Adapted from the shared nixeval harness.
{ lib, pkgs, ... }:
let
  t = lib.types;
  freeform = t.submodule { freeformType = t.attrsOf t.anything; };
  unit = t.submodule {
    freeformType = t.attrsOf t.anything;
    options = {
      wantedBy = lib.mkOption {
        type = t.listOf t.str;
        default = [ ];
      };
      requires = lib.mkOption {
        type = t.listOf t.str;
        default = [ ];
      };
      wants = lib.mkOption {
        type = t.listOf t.str;
        default = [ ];
      };
      after = lib.mkOption {
        type = t.listOf t.str;
        default = [ ];
      };
      before = lib.mkOption {
        type = t.listOf t.str;
        default = [ ];
      };
      path = lib.mkOption {
        type = t.listOf t.anything;
        default = [ ];
      };
      environment = lib.mkOption {
        type = t.attrsOf t.anything;
        default = { };
      };
      unitConfig = lib.mkOption {
        type = t.attrsOf t.anything;
        default = { };
      };
      serviceConfig = lib.mkOption {
        type = t.attrsOf t.anything;
        default = { };
      };
      socketConfig = lib.mkOption {
        type = t.attrsOf t.anything;
        default = { };
      };
      startLimitBurst = lib.mkOption {
        type = t.nullOr t.int;
        default = null;
      };
      startLimitIntervalSec = lib.mkOption {
        type = t.nullOr t.int;
        default = null;
      };
    };
  };
in
{
  config._module.freeformType = t.attrsOf t.anything;
  options = {
    assertions = lib.mkOption {
      type = t.listOf t.unspecified;
      default = [ ];
    };
    warnings = lib.mkOption {
      type = t.listOf t.str;
      default = [ ];
    };
    meta = lib.mkOption {
      type = t.attrsOf t.anything;
      default = { };
    };
    systemd.package = lib.mkOption {
      type = t.package;
      default = pkgs.systemd;
    };
    systemd.services = lib.mkOption {
      type = t.attrsOf unit;
      default = { };
    };
    systemd.sockets = lib.mkOption {
      type = t.attrsOf unit;
      default = { };
    };
    systemd.tmpfiles.rules = lib.mkOption {
      type = t.listOf t.str;
      default = [ ];
    };
    systemd.tmpfiles.settings = lib.mkOption {
      type = t.attrsOf (t.attrsOf (t.attrsOf (t.attrsOf t.anything)));
      default = { };
    };
    users.users = lib.mkOption {
      type = t.attrsOf (
        t.submodule {
          freeformType = t.attrsOf t.anything;
          options.uid = lib.mkOption {
            type = t.nullOr t.int;
            default = null;
          };
        }
      );
      default = { };
    };
    users.groups = lib.mkOption {
      type = t.attrsOf freeform;
      default = { };
    };
    networking.firewall.extraForwardRules = lib.mkOption {
      type = t.lines;
      default = "";
    };
    networking.firewall.allowedTCPPorts = lib.mkOption {
      type = t.listOf t.port;
      default = [ ];
    };
    networking.nftables = lib.mkOption {
      type = t.submodule {
        freeformType = t.attrsOf t.anything;
        options.enable = lib.mkOption {
          type = t.bool;
          default = false;
        };
        options.tables = lib.mkOption {
          type = t.attrsOf freeform;
          default = { };
        };
      };
      default = { };
    };
    boot.kernel.sysctl = lib.mkOption {
      type = t.attrsOf t.anything;
      default = { };
    };
    environment.systemPackages = lib.mkOption {
      type = t.listOf t.anything;
      default = [ ];
    };
    environment.etc = lib.mkOption {
      type = t.attrsOf freeform;
      default = { };
    };
  };
}
