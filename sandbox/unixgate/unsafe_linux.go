package unixgate

import "unsafe"

// unsafePointer returns a pointer to the first byte of a non-empty slice.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
