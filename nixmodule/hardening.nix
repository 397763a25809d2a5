# The hardening every unit of the module shares (service.nix), and the pieces of it the
# server and setup units reuse. Plain values: no module arguments beyond lib.
{ lib }:
let
  inherit (lib) mkDefault;
in
{
  # One attrset, so a new unit cannot forget a setting; each unit then loosens exactly what
  # it needs (with the reason next to it). All mkDefault: serviceOverrides wins. The scores
  # (`systemd-analyze security --offline=true`) are enforced by systemdtests' TestUnitScores.
  hardening =
    extra:
    lib.mapAttrs (_: mkDefault) (
      {
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        LockPersonality = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RestrictNamespaces = true;
        SystemCallArchitectures = "native";
        # A call outside the allow-list fails with EPERM instead of killing the process:
        # opencode and the init scripts' toolchains probe optional calls and fall back.
        SystemCallErrorNumber = "EPERM";
        UMask = "0077";
      }
      // extra
    );

  # The server's UMask, on purpose 0027 (issue 16): what the agent writes in `directory`
  # (code, build output) stays readable by the instance's group, which is how a human user
  # or a CI job is given read access (add them to the group); the world gets nothing.
  # stateDir is made 0700 by setup regardless, so secrets there stay private.
  umask = "0027";

  # systemd 252's @system-service lacks these (newer systemd has them in @sandbox); the
  # launcher confines the server with them: Landlock, its seccomp filters (the unix gate's
  # listener), and pidfd_getfd (in @debug), with which the gate copies the socket a
  # confined process asks to connect.
  launcherSyscalls = [
    "landlock_create_ruleset"
    "landlock_add_rule"
    "landlock_restrict_self"
    "seccomp"
    "pidfd_getfd"
  ];
}
