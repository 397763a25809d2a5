# Table tests for ../lib.nix (builtins only). Evaluates to the list of failing cases;
# ../check.sh requires it to be empty:
#   nix-instantiate --eval --strict --json nixmodule/tests/lib-test.nix
let
  l = import ../lib.nix;
  cases = fn: expected: inputs: map (x: { inherit fn x expected; got = l.${fn} x; }) inputs;
  # Two-argument functions: each input is [ first second ].
  cases2 =
    fn: expected: inputs:
    map (x: {
      inherit fn x expected;
      got = l.${fn} (builtins.elemAt x 0) (builtins.elemAt x 1);
    }) inputs;
  all = builtins.concatLists [
    (cases "isCidr" true [
      "10.10.0.0/16"
      "0.0.0.0/0"
      "255.255.255.255/32"
      "::/0"
      "fd00::/8"
      "2001:db8::1/128"
      "::ffff:10.0.0.1/128"
      "1:2:3:4:5:6:7:8/64"
      "1:2:3:4:5:6:7::/64"
      "FD00::/8"
    ])
    (cases "isCidr" false [
      "10.0.0.0/33"
      "256.0.0.0/8"
      "10.0.0/8"
      "10.0.0.0"
      "01.0.0.0/8"
      "10.0.0.0/08"
      "10.0.0.0/"
      "/8"
      "1:2:3:4:5:6:7:8:9/64"
      "1::2::3/64"
      "fd00:::1/64"
      "fd00::/129"
      "gggg::/16"
      "1:2:3:4:5:6::1.2.3.4/96"
      "example.com/24"
      ""
    ])
    (cases "isSupportedOpencodeVersion" true [
      "1.18.33"
      "1.18.0"
      "1.18"
      "1.18.40-beta.1"
    ])
    (cases "isSupportedOpencodeVersion" false [
      "1.17.9"
      "1.19.0"
      "1.180.1"
      "11.18.1"
      "0.18.33"
      "2.0.0"
      ""
      "unstable-2025-01-01"
    ])
    (cases "isDomain" true [
      "api.anthropic.com"
      "registry.npmjs.org:443"
      "*.github.com"
      "*.githubusercontent.com:443"
      "API.Anthropic.COM."
      "my_host.example.org"
      "a.b"
      "xn--bcher-kva.example"
    ])
    (cases "isDomain" false [
      ""
      "localhost"
      "foo.localhost"
      "anthropic"
      "*.com"
      "https://api.anthropic.com"
      "api.anthropic.com/v1"
      "user@example.com"
      "1.2.3.4"
      "[::1]"
      "::1"
      "example.com:0"
      "example.com:65536"
      "example.com:http"
      "example.com:443:1"
      "a..b.com"
      ".example.com"
      "-a.example.com"
      "a-.example.com"
      "foo.*.example.com"
      "**.example.com"
      "exa mple.com"
      "bücher.example"
      "example.123"
    ])
    (cases "isIP" true [
      "127.0.0.1"
      "0.0.0.0"
      "::"
      "::1"
      "fe80::1"
    ])
    (cases "isIP" false [
      "localhost"
      "10.0.0.0/8"
      "1.2.3"
      ":::"
    ])
    (cases "isIPv4Subnet30" true [ "100.100.3.0/30" ])
    (cases "isIPv4Subnet30" false [
      "100.100.3.0/29"
      "fd00::/30"
    ])
    (cases "isValidName" true [
      "my-project"
      "db_project"
      "a"
      "0day"
      "abcdefghijklmnopqrstuvw" # 23 characters: opencode-<name> is 32
    ])
    (cases "isValidName" false [
      "-x"
      "_x"
      "Upper"
      "a.b"
      "a b"
      "with/slash"
      ""
      "abcdefghijklmnopqrstuvwx" # 24 characters
    ])
    (cases "isAbsolute" true [
      "/srv/x"
      "/"
    ])
    (cases "isAbsolute" false [
      "srv/x"
      "./x"
      ""
    ])
    (cases2 "isWithin" true [
      [ "/srv/a" "/srv/a" ]
      [ "/srv/a/b" "/srv/a" ]
      [ "/srv/a/" "/srv/a" ]
      [ "/srv/a" "/srv/a//" ]
      [ "/srv" "/" ]
    ])
    (cases2 "isWithin" false [
      [ "/srv/ab" "/srv/a" ]
      [ "/srv" "/srv/a" ]
      [ "/var/lib/x" "/srv" ]
    ])
    (cases2 "pathsOverlap" true [
      [ "/var/lib/opencode/a" "/var/lib/opencode/a/sub" ]
      [ "/var/lib/opencode/a/sub" "/var/lib/opencode/a" ]
      [ "/x" "/x/" ]
    ])
    (cases2 "pathsOverlap" false [
      [ "/var/lib/opencode/a" "/var/lib/opencode/a-b" ]
      [ "/var/lib/opencode/a" "/var/lib/opencode/b" ]
    ])
    (cases2 "unitNameClashes" [ "a-setup" "a-dns" ] [
      [ [ "a" "a-setup" "b" "a-dns" "a-other" ] "a" ]
    ])
    (cases2 "unitNameClashes" [ ] [
      [ [ "a" "ab-setup" "setup" "a-setups" ] "a" ]
      [ [ "a-setup" ] "a-setup" ]
    ])
  ];
in
builtins.filter (c: c.got != c.expected) all
