package main

import (
	"errors"
	"fmt"
	"runtime"
)

// Panic scenarios: each site panics and the runner recovers it, so the
// truth knows exactly what was thrown. Their values exist before the
// recording starts (no error creation happens at these sites).
type panicScenario struct {
	name  string
	fn    func(i int)
	count int
}

var panicScenarios = []panicScenario{
	{"panic_error", sitePanicError, 3},
	{"panic_string", sitePanicString, 4},
	{"panic_int", sitePanicInt, 5},
	{"panic_nil_map", sitePanicNilMap, 6},
	{"panic_index", sitePanicIndex, 7},
	{"panic_assert", sitePanicAssert, 8},
	{"panic_nil_deref", sitePanicNilDeref, 9},
}

var errPanicValue = errors.New("errgen: panic with an error value")

type point struct{ x, y int }

var (
	nilMap   map[string]int
	short        = []int{1, 2, 3}
	anything any = "a string"
	nilPoint *point
)

//go:noinline
func sitePanicError(i int) { panic(errPanicValue) }

//go:noinline
func sitePanicString(i int) { panic("errgen: panic with a string") }

//go:noinline
func sitePanicInt(i int) { panic(40 + i%2) }

//go:noinline
func sitePanicNilMap(i int) { nilMap["x"] = i }

//go:noinline
func sitePanicIndex(i int) { short[i%2+5] = 0 }

//go:noinline
func sitePanicAssert(i int) { _ = anything.(int) + i }

//go:noinline
func sitePanicNilDeref(i int) { nilPoint.x = i }

//go:noinline
func siteFatalPanic() { panic("errgen: fatal panic") }

// panicResult is the truth of one panic value at one site.
type panicResult struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Count    int    `json:"count"`
	Type     string `json:"type"`
	// What an out-of-process profiler shows: see panicProfileMessage.
	ProfileMessage string `json:"profile_message"`
	Recovered      bool   `json:"recovered"`
	RuntimeError   bool   `json:"runtime_error"`
}

// panicProfileMessage is the panic value as a profile can show it: an
// error's message (profileMessage), a string, an integer. The runtime's
// bounds and type-assertion errors compute their text from numbers and
// type pointers a profiler does not capture: their type name stands in.
func panicProfileMessage(r any) string {
	switch v := r.(type) {
	case error:
		if t := fmt.Sprintf("%T", v); t == "runtime.boundsError" || t == "*runtime.TypeAssertionError" {
			return t
		}
		return profileMessage(v)
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func notePanic(out *[]panicResult, name, function string, r any, recovered bool) {
	_, isRuntime := r.(runtime.Error)
	p := panicResult{name, function, 1, fmt.Sprintf("%T", r), panicProfileMessage(r), recovered,
		isRuntime}
	for k := range *out {
		q := &(*out)[k]
		if q.Name == p.Name && q.Type == p.Type && q.ProfileMessage == p.ProfileMessage {
			q.Count++
			return
		}
	}
	*out = append(*out, p)
}

func runPanic(fn func(i int), i int) (r any) {
	defer func() { r = recover() }()
	fn(i)
	return nil
}
