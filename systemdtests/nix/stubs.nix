# Stand-ins for the NixOS options that nixmodule/ writes to, so the module can be evaluated
# with the real nixpkgs `lib.evalModules` without the rest of nixpkgs. Unit options keep
# NixOS's merge rules (a unit setting defined as a list anywhere concatenates, otherwise the
# definitions must agree), which is what decides the rendered ExecStartPre= order.
# Anything else lands in a freeform catch-all; render.nix refuses unit options it does not
# know how to render instead of dropping them.
{ lib, pkgs, ... }:
let
  t = lib.types;
  freeform = t.submodule { freeformType = t.attrsOf t.anything; };
  # nixpkgs nixos/lib/systemd-unit-options.nix: unitOption
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (d: lib.isList d.value) defs' then
        lib.concatMap (d: lib.toList d.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  strList = lib.mkOption {
    type = t.listOf t.str;
    default = [ ];
  };
  lines = lib.mkOption {
    type = t.lines;
    default = "";
  };
  unit = t.submodule {
    freeformType = t.attrsOf t.anything;
    options = {
      enable = lib.mkOption {
        type = t.bool;
        default = true;
      };
      description = lib.mkOption {
        type = t.str;
        default = "";
      };
      documentation = strList;
      wantedBy = strList;
      requiredBy = strList;
      requires = strList;
      wants = strList;
      upholds = strList;
      after = strList;
      before = strList;
      bindsTo = strList;
      partOf = strList;
      conflicts = strList;
      requisite = strList;
      onFailure = strList;
      onSuccess = strList;
      startLimitBurst = lib.mkOption {
        type = t.nullOr t.int;
        default = null;
      };
      startLimitIntervalSec = lib.mkOption {
        type = t.nullOr t.int;
        default = null;
      };
      path = lib.mkOption {
        type = t.listOf t.anything;
        default = [ ];
      };
      environment = lib.mkOption {
        type = t.attrsOf t.anything;
        default = { };
      };
      script = lines;
      preStart = lines;
      postStart = lines;
      reload = lines;
      preStop = lines;
      postStop = lines;
      restartTriggers = lib.mkOption {
        type = t.listOf t.anything;
        default = [ ];
      };
      reloadTriggers = lib.mkOption {
        type = t.listOf t.anything;
        default = [ ];
      };
      restartIfChanged = lib.mkOption {
        type = t.bool;
        default = true;
      };
      reloadIfChanged = lib.mkOption {
        type = t.bool;
        default = false;
      };
      stopIfChanged = lib.mkOption {
        type = t.bool;
        default = true;
      };
      listenStreams = strList;
      unitConfig = lib.mkOption {
        type = t.attrsOf unitOption;
        default = { };
      };
      serviceConfig = lib.mkOption {
        type = t.attrsOf unitOption;
        default = { };
      };
      socketConfig = lib.mkOption {
        type = t.attrsOf unitOption;
        default = { };
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
    systemd.package = lib.mkOption {
      type = t.anything;
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
    systemd.targets = lib.mkOption {
      type = t.attrsOf unit;
      default = { };
    };
    systemd.tmpfiles.rules = lib.mkOption {
      type = t.listOf t.str;
      default = [ ];
    };
    systemd.tmpfiles.settings = lib.mkOption {
      type = t.attrsOf (t.attrsOf (t.attrsOf t.anything));
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
    meta = lib.mkOption {
      type = t.attrsOf t.anything;
      default = { };
    };
  };
}
