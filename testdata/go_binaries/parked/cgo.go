//go:build goerrprof_cgo

package main

// static int goerrprof_c_add(int a, int b) { return a + b; }
import "C"

// Calling into C once makes this a real cgo, externally linked binary.
func init() {
	if C.goerrprof_c_add(1, 2) != 3 {
		panic("cgo call broken")
	}
}
