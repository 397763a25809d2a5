package netpolicy

// hostMountNS is PID 1's mount namespace, the host's (netns_linux.go pins
// network namespaces there). A variable only so that a test, where PID 1
// may be out of reach (a container), can name its own process's namespace
// as the host's.
var hostMountNS = "/proc/1/ns/mnt"
