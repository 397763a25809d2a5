# Small validators for the services.opencode module, written with `builtins` only so that
# CI can evaluate them with a bare `nix-instantiate` (no nixpkgs). They answer "does this
# parse?", nothing more: the launcher's `check` is the authority and runs at build time.
let
  inherit (builtins)
    all
    elemAt
    filter
    isString
    length
    match
    split
    stringLength
    substring
    ;

  # `builtins.split` returns separators as lists; keep the strings.
  splitOn = sep: s: filter isString (split sep s);

  isDecimal = s: match "0|[1-9][0-9]{0,2}" s != null;
  decimalAtMost = max: s: isDecimal s && builtins.fromJSON s <= max;

  isIPv4 =
    s:
    let
      octets = splitOn "\\." s;
    in
    isString s && length octets == 4 && all (decimalAtMost 255) octets;

  isHextet = s: match "[0-9a-fA-F]{1,4}" s != null;

  # Groups of one side of "::" ("" for an empty side). An embedded dotted IPv4 address is
  # allowed as the last group and counts as two.
  groupsOf =
    lastSide: s:
    if s == "" then
      {
        ok = true;
        n = 0;
      }
    else
      let
        gs = splitOn ":" s;
        n = length gs;
        last = elemAt gs (n - 1);
        lastIsV4 = lastSide && isIPv4 last;
        hexGroups = if lastIsV4 then builtins.genList (i: elemAt gs i) (n - 1) else gs;
      in
      {
        ok = all isHextet hexGroups;
        n = if lastIsV4 then n + 1 else n;
      };

  isIPv6 =
    s:
    let
      halves = splitOn "::" s;
      nHalves = length halves;
    in
    isString s
    && match ".*:::.*" s == null
    && (
      if nHalves == 1 then
        let
          g = groupsOf true s;
        in
        g.ok && g.n == 8
      else if nHalves == 2 then
        let
          l = groupsOf false (elemAt halves 0);
          r = groupsOf true (elemAt halves 1);
        in
        l.ok && r.ok && l.n + r.n <= 7
      else
        false
    );

  isIP = s: isIPv4 s || isIPv6 s;

  # "address/prefix", prefix mandatory (a bare address is not a CIDR here).
  cidrParts =
    s:
    let
      parts = splitOn "/" s;
    in
    if isString s && length parts == 2 then
      {
        addr = elemAt parts 0;
        prefix = elemAt parts 1;
      }
    else
      null;

  isIPv4Cidr =
    s:
    let
      p = cidrParts s;
    in
    p != null && isIPv4 p.addr && decimalAtMost 32 p.prefix;

  isIPv6Cidr =
    s:
    let
      p = cidrParts s;
    in
    p != null && isIPv6 p.addr && decimalAtMost 128 p.prefix;

  isCidr = s: isIPv4Cidr s || isIPv6Cidr s;

  isIPv4Subnet30 = s: isIPv4Cidr s && (cidrParts s).prefix == "30";

  # Instance names become the user `opencode-<name>` (at most 32 characters, lower case
  # [a-z0-9_-], starting with a letter or digit, as the launcher's `check` wants) and the units `opencode-<name>[-setup|-proxy]`.
  userPrefix = "opencode-";
  maxUserLength = 32;
  maxNameLength = maxUserLength - stringLength userPrefix;
  isValidName =
    name:
    isString name
    && match "[a-z0-9][a-z0-9_-]*" name != null
    && stringLength name <= maxNameLength;

  isAbsolute = p: isString p && substring 0 1 p == "/";

  # "/a/b/" -> "/a/b", so that stateDir and directory compare as paths.
  stripTrailingSlashes =
    p:
    let
      m = match "(.*[^/])/+" p;
    in
    if m == null then p else elemAt m 0;

  # Whether path `p` is `dir` or lies below it ("/a/b" is within "/a", "/ab" is not).
  isWithin =
    p: dir:
    let
      p' = stripTrailingSlashes p;
      d' = stripTrailingSlashes dir;
    in
    p' == d' || d' == "/" || substring 0 (stringLength d' + 1) p' == "${d'}/";

  # Whether one of two paths is, or contains, the other.
  pathsOverlap = a: b: isWithin a b || isWithin b a;

  # The units of instance <name> are opencode-<name> plus these suffixes (-dns is reserved
  # for a resolver unit), so an instance named "<other>-<suffix>" collides with <other>'s.
  unitSuffixes = [
    "setup"
    "proxy"
    "dns"
  ];

  # The names among `names` whose units collide with those of instance `name`: the
  # instances called "<name>-<suffix>".
  unitNameClashes =
    names: name: filter (n: builtins.elem n (map (s: "${name}-${s}") unitSuffixes)) names;

  # One outboundAllowDomains entry, as netpolicy.ParseDomain takes it: a fully qualified
  # host name ("api.anthropic.com", a trailing root dot allowed), optionally with a leading
  # "*." wildcard label and a ":port" (1-65535). Labels: letters, digits, '-' and '_', at
  # most 63 characters, not starting or ending with '-'; at least two labels; a top-level
  # label that does not start with a digit (so no IP addresses); not localhost.
  isDomainLabel = l: match "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?" l != null;
  isPortString = p: match "[0-9]{1,5}" p != null && builtins.fromJSON (stripLeadingZeros p) >= 1 && builtins.fromJSON (stripLeadingZeros p) <= 65535;
  stripLeadingZeros =
    p:
    let
      m = match "0*([0-9]+)" p;
    in
    elemAt m 0;
  isDomain =
    entry:
    let
      parts = splitOn ":" entry;
      nParts = length parts;
      hostPart = elemAt parts 0;
      portOk = nParts == 1 || (nParts == 2 && isPortString (elemAt parts 1));
      wild = match "[*][.](.*)" hostPart;
      host0 = if wild == null then hostPart else elemAt wild 0;
      dotless = match "(.*[^.])[.]" host0;
      host = if dotless == null then host0 else elemAt dotless 0;
      labels = splitOn "[.]" host;
      top = elemAt labels (length labels - 1);
    in
    isString entry
    && entry != ""
    && portOk
    && host != ""
    && stringLength host <= 253
    && all isDomainLabel labels
    && length labels >= 2
    && match "[0-9].*" top == null
    && match "(.*[.])?[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]" host == null;

  # The opencode versions the launcher is made for (its config keys, `serve` flags, the
  # health endpoint and the sandbox's file and network grants were measured with them);
  # the pinned one is what CI runs (scripts/install-deps.sh).
  opencodeSeries = "1.18";
  opencodePinned = "1.18.33";
  isSupportedOpencodeVersion =
    v: isString v && match "1[.]18([.][0-9]+)?([-+][0-9A-Za-z.+-]*)?" v != null;
in
{
  inherit
    opencodeSeries
    opencodePinned
    isSupportedOpencodeVersion
    isDomain
    isWithin
    pathsOverlap
    unitSuffixes
    unitNameClashes
    isIPv4
    isIPv6
    isIP
    isIPv4Cidr
    isIPv6Cidr
    isCidr
    isIPv4Subnet30
    isValidName
    isAbsolute
    stripTrailingSlashes
    userPrefix
    maxNameLength
    ;
}
