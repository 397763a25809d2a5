// Package pidinit lets the launcher start as pid 1 of a PID namespace (systemd's
// PrivatePIDs=, which the NixOS module sets on systemd ≥ 257, or a container's entry
// point). pid 1 has duties no other process has: orphans are re-parented to it, and a
// zombie that it does not reap holds a pid (and a slot of the unit's TasksMax) until the
// namespace ends. An agent's background jobs orphan all the time, and the launcher's run
// reaps only the server. So pid 1 stays a small init that reaps everything and forwards
// signals, and the launcher proper runs as its child.
package pidinit

// Env is set in the launcher's environment by the init, so that the child knows the
// namespace's pid 1 is ours (explain then says what holds).
const Env = "OCNIX_PID1"
