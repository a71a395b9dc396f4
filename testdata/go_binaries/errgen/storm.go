package main

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"time"
)

var errStormBase = errors.New("dependency down")

// stormSink keeps stormWork's result alive.
var stormSink uint64

// stormSite is one site creating errors as fast as its caller loops (a
// retry storm against a dead dependency).
//
//go:noinline
func stormSite(i int) error {
	if i < 0 {
		return nil
	}
	return fmt.Errorf("retry: %w", errStormBase)
}

// calmSite creates a few errors after the storm; a budget that took the
// storm's site off must leave it alone.
//
//go:noinline
func calmSite(i int) error {
	return fmt.Errorf("calm %d", i%2)
}

func funcName(f interface{}) string {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}

// stormWork stands for what a real retry does before it fails (a dial, a
// parse): `work` rounds of xorshift, about a nanosecond each.
//
//go:noinline
func stormWork(work int, x uint64) uint64 {
	for j := 0; j < work; j++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// runStorm creates n errors at stormSite, each after `work` rounds of
// stormWork, then calm at calmSite, and prints the truth with the storm's
// duration.
func runStorm(n, calm, work int) {
	start := time.Now()
	var last error
	x := uint64(88172645463325252)
	for i := 0; i < n; i++ {
		if work > 0 {
			x = stormWork(work, x)
		}
		last = stormSite(i)
	}
	stormSink = x
	elapsed := time.Since(start)
	for i := 0; i < calm; i++ {
		last = calmSite(i)
	}
	if last == nil && n+calm > 0 {
		fail("storm made no error")
	}
	emit(map[string]interface{}{
		"storm": n, "storm_function": funcName(stormSite),
		"calm": calm, "calm_function": funcName(calmSite),
		"elapsed_ns": elapsed.Nanoseconds(),
	})
}
