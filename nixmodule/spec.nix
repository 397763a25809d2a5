# One instance's option values -> the instance spec (the JSON the launcher reads).
#
# `builtins` only, so that CI can evaluate it without nixpkgs:
#
#   nix-instantiate --eval --strict --json -E \
#     'import ./nixmodule/spec.nix (import ./nixmodule/fixtures/basic.nix)'
#
# The module resolves everything that needs pkgs before calling this (packages -> "<pkg>/bin",
# shell lines -> a script in the store, opencodeCfg modules -> one attrset, the opencode
# package -> `command`). What is left is plain data, and this function only gives it the
# contract's shape (DESIGN.md "The contract", docs/internal-api.md). It takes every key
# explicitly (no `...`) and emits exactly the contract's keys: a typo or a forgotten key
# fails evaluation here instead of weakening a sandbox at run time.
{
  name,
  user ? "opencode-${name}",
  group ? user,
  directory,
  stateDir,
  listen,
  environment,
  environmentFile,
  path,
  logLevel,
  model,
  provider,
  extraArgs,
  sandbox,
  networkIsolation,
  preInitScript,
  postInitScript,
  opencodeConfig,
  command,
  initScriptTimeout,
}:
let
  inherit (builtins)
    all
    attrNames
    attrValues
    isAttrs
    isBool
    isInt
    isList
    isString
    ;

  expect =
    what: ok: value:
    if ok then value else throw "opencode instance spec `${name}`: ${what}";

  str = key: v: expect "`${key}` must be a string" (isString v) v;
  nullOrStr = key: v: expect "`${key}` must be a string or null" (v == null || isString v) v;
  strList = key: v: expect "`${key}` must be a list of strings" (isList v && all isString v) v;
  intList = key: v: expect "`${key}` must be a list of integers" (isList v && all isInt v) v;
  int = key: v: expect "`${key}` must be an integer" (isInt v) v;
  bool = key: v: expect "`${key}` must be a boolean" (isBool v) v;
  strAttrs =
    key: v: expect "`${key}` must be an attribute set of strings" (isAttrs v && all isString (attrValues v)) v;

  # Select exactly the contract's sub-keys; reject extra ones.
  only =
    key: keys: v:
    let
      extra = builtins.filter (k: !(builtins.elem k keys)) (attrNames v);
    in
    expect "`${key}` must be an attribute set" (isAttrs v) (
      expect "`${key}` has unknown keys: ${builtins.concatStringsSep ", " extra}" (extra == [ ]) v
    );

  listen' = only "listen" [ "address" "port" ] listen;
  sandbox' = only "sandbox" [
    "readWritePaths"
    "readOnlyPaths"
    "unixSockets"
    "allowBindPorts"
  ] sandbox;
  unixSockets' = only "sandbox.unixSockets" [ "allow" ] sandbox'.unixSockets;
  net' = only "networkIsolation" [
    "enable"
    "outboundAllowCidrs"
    "outboundAllowDomains"
    "subnet"
    "nameservers"
  ] networkIsolation;
in
{
  name = str "name" name;
  user = str "user" user;
  group = str "group" group;
  directory = str "directory" directory;
  stateDir = str "stateDir" stateDir;
  listen = {
    address = str "listen.address" listen'.address;
    port = int "listen.port" listen'.port;
  };
  environment = strAttrs "environment" environment;
  environmentFile = nullOrStr "environmentFile" environmentFile;
  path = strList "path" path;
  logLevel = nullOrStr "logLevel" logLevel;
  model = nullOrStr "model" model;
  provider = nullOrStr "provider" provider;
  extraArgs = strList "extraArgs" extraArgs;
  sandbox = {
    readWritePaths = strList "sandbox.readWritePaths" sandbox'.readWritePaths;
    readOnlyPaths = strList "sandbox.readOnlyPaths" sandbox'.readOnlyPaths;
    unixSockets.allow = strList "sandbox.unixSockets.allow" unixSockets'.allow;
    allowBindPorts = intList "sandbox.allowBindPorts" sandbox'.allowBindPorts;
  };
  networkIsolation = {
    enable = bool "networkIsolation.enable" net'.enable;
    outboundAllowCidrs = strList "networkIsolation.outboundAllowCidrs" net'.outboundAllowCidrs;
    subnet = nullOrStr "networkIsolation.subnet" net'.subnet;
    nameservers = strList "networkIsolation.nameservers" net'.nameservers;
    outboundAllowDomains = strList "networkIsolation.outboundAllowDomains" net'.outboundAllowDomains;
  };
  preInitScript = nullOrStr "preInitScript" preInitScript;
  postInitScript = nullOrStr "postInitScript" postInitScript;
  opencodeConfig = expect "`opencodeConfig` must be an attribute set" (isAttrs opencodeConfig) opencodeConfig;
  command = expect "`command` must be a non-empty list of strings" (
    isList command && command != [ ] && all isString command
  ) command;
  initScriptTimeout = int "initScriptTimeout" initScriptTimeout;
}
