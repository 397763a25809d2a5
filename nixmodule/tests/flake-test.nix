# Evaluation tests of flake.nix's launcher package, with the real nixpkgs `lib` and a stand-in
# nixpkgs (no builds). Evaluates to the list of failing cases; nixmodule/tests/eval.sh
# requires it to be empty:
#   nix-instantiate --eval --strict --json nixmodule/tests/flake-test.nix --arg lib 'import <nixpkgs.lib>/lib'
{ lib }:
let
  flake = import ../../flake.nix;
  versionFile = lib.fileContents ../../VERSION;

  # What buildGoModule would build, returned as the arguments it got plus which builder it was.
  builder = which: args: args // { builtBy = which; };
  pkgsWith =
    { go126, goVersion }:
    {
      go = {
        version = goVersion;
      };
      buildGoModule = builder "buildGoModule";
      pkg-config = "pkg-config";
      libseccomp = "libseccomp";
    }
    // lib.optionalAttrs go126 {
      go_1_26 = {
        version = "1.26.8";
      };
      buildGo126Module = builder "buildGo126Module";
    };
  launcherWith =
    self: pkgs:
    (flake.outputs {
      inherit self;
      nixpkgs = {
        inherit lib;
        legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs);
      };
    }).packages.x86_64-linux.opencode-launcher;

  withGo126 = pkgsWith {
    go126 = true;
    goVersion = "1.25.4";
  };
  commitA = {
    shortRev = "1111111";
  };
  commitB = {
    dirtyShortRev = "2222222-dirty";
  };
  l = launcherWith commitA withGo126;

  flakeText = builtins.readFile ../../flake.nix;
  hashLines = builtins.filter (x: builtins.isList x) (
    builtins.split "\n[[:space:]]*vendorHash = \"(sha256-[A-Za-z0-9+/]{43}=)\";" flakeText
  );

  fails = name: ok: if ok then [ ] else [ name ];
  throws = v: !(builtins.tryEval (builtins.deepSeq v v)).success;
in
lib.concatLists [
  (fails "uses buildGo126Module when nixpkgs has go_1_26" (l.builtBy == "buildGo126Module"))
  (fails "version is the VERSION file (${versionFile}), got ${l.version}" (l.version == versionFile))
  (fails "version does not depend on the commit" (
    (launcherWith commitB withGo126).version == l.version
  ))
  (fails "ldflags set launcher.Version from VERSION" (
    builtins.elem "-X github.com/ocnix/ocnix/launcher.Version=${versionFile}" l.ldflags
  ))
  (fails "exactly one grep-able vendorHash line in flake.nix" (builtins.length hashLines == 1))
  (fails "the package's vendorHash is that line's" (
    builtins.length hashLines == 1 && l.vendorHash == builtins.head (builtins.head hashLines)
  ))
  (fails "vendorHash is not lib.fakeHash" (l.vendorHash != lib.fakeHash))
  (fails "no Go 1.26 (go 1.25 only) fails instead of using an older buildGoModule" (
    throws
      (launcherWith commitA (pkgsWith {
        go126 = false;
        goVersion = "1.25.4";
      })).pname
  ))
  (fails "a default go of 1.26 or newer without go_1_26 uses buildGoModule" (
    (launcherWith commitA (pkgsWith {
      go126 = false;
      goVersion = "1.27.1";
    })).builtBy == "buildGoModule"
  ))
]
