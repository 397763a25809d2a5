// Package e2e tests opencode-launcher the way operators run it: the built
// binary, the real kernel (Landlock, seccomp, netns, nftables), a real
// PostgreSQL socket and a real opencode server. The tests need root and skip
// loudly without it; CI runs them as root.
package e2e
