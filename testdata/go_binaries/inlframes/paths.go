package main

import "runtime"

// Everything below without //go:noinline is small enough to be inlined;
// check with `go build -gcflags=-m ./inlframes`.

// pcbuf is global and Callers is called through a func value: both keep
// capture cheap enough (inline cost) to sit under four inlined levels.
var (
	pcbuf   = make([]uintptr, 64)
	callers = runtime.Callers
)

// capture is the innermost frame of every stack; it returns the PC count.
func capture() int { return callers(0, pcbuf) }

func a1() int { return a2() }
func a2() int { return capture() }

func b1() int { return capture() }

func d1() int { return d2() }
func d2() int { return d3() }
func d3() int { return capture() }

type walker struct{ depth int }

func (w walker) step() int { return capture() }

// g1 is called from main itself, so its chain is inlined into main.main.
func g1() int { return b1() }

// pathA: capture, a2, a1 inlined into pathA (3 levels).
//
//go:noinline
func pathA() { record(a1()) }

// pathB: capture, b1 inlined (2 levels).
//
//go:noinline
func pathB() { record(b1()) }

// pathC: same inlined chain as pathA under another physical caller.
//
//go:noinline
func pathC() { record(a1()) }

// pathD: capture, d3, d2, d1 inlined (4 levels).
//
//go:noinline
func pathD() { record(d1()) }

// pathE: a physical frame (e1) between two inlined groups.
//
//go:noinline
func pathE() { record(e1()) }

//go:noinline
func e1() int { return b1() }

// pathF: an inlined method.
//
//go:noinline
func pathF() { record(walker{depth: 1}.step()) }
