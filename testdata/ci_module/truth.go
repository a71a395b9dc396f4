// Package cimodule is the Go module goerrprof's CI-profiling tests record
// with `goerrprof record -- go test ./...`. Its tests create known errors and
// write what they created to $GOERRPROF_TRUTH_DIR (one JSON file per test
// binary); GOERRPROF_REGRESS=1 adds an error site and doubles another, and
// GOERRPROF_FAIL=1 makes a test fail.
package cimodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

var (
	mu     sync.Mutex
	counts = map[string]int{}
)

// Created counts n errors created by fn (the function holding the site).
func Created(fn interface{}, n int) {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	mu.Lock()
	counts[name] += n
	mu.Unlock()
}

// Regress reports whether the regression switch is on.
func Regress() bool { return os.Getenv("GOERRPROF_REGRESS") == "1" }

// WriteTruth writes the counts as <dir>/<name>.json when a dir is given.
func WriteTruth(name string) error {
	dir := os.Getenv("GOERRPROF_TRUTH_DIR")
	if dir == "" {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	data, err := json.Marshal(map[string]interface{}{"pid": os.Getpid(), "sites": counts})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644)
}

// Main runs a package's tests, then writes its truth as <name>.json; a
// truth that cannot be written fails the run.
func Main(m *testing.M, name string) {
	code := m.Run()
	if err := WriteTruth(name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
