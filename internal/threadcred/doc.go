// Package threadcred changes the credentials of the calling OS thread only.
//
// Linux keeps credentials per thread; glibc and Go's syscall.Setgroups,
// Setresuid and Setresgid change every thread of the process (a signal to
// each, which costs milliseconds and would also switch the threads of a
// supervisor that must stay root). These functions are the raw syscalls:
// they act on the thread that calls them, so the caller must hold it with
// runtime.LockOSThread and must not unlock it while the thread carries
// credentials other than the process's own (the runtime would hand it to
// another goroutine). A thread whose switch failed half-way should end
// locked, which makes the runtime retire it.
package threadcred

// Keep is passed to Setresuid and Setresgid for an id that stays as it is.
const Keep = -1
