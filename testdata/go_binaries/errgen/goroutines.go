package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"sort"
	"strconv"
)

// Scenarios whose errors are created on a goroutine of their own, started
// by runLabelled and carrying pprof labels, so a profiler can be checked
// for the creating goroutine's context (its creation site and labels).
var goroutineScenarios = []scenario{
	{"labelled_goroutine", siteLabelled, 15},
	{"many_labels", siteManyLabels, 16},
}

// labelsFor is the label set a goroutine scenario runs under for call i:
// two values alternate so label sets split a site's samples; many_labels
// has more labels than one map bucket holds (Go <= 1.23 keeps them in a map).
func labelsFor(name string, i int) []string {
	if name == "many_labels" {
		kv := []string{}
		for k := 0; k < 11; k++ {
			kv = append(kv, fmt.Sprintf("key%02d", k), fmt.Sprintf("value %d/%d", k, i%2))
		}
		return kv
	}
	return []string{"tenant", "acme", "request", "req-" + strconv.Itoa(i%2)}
}

//go:noinline
func siteLabelled(i int) error { return fmt.Errorf("errgen: labelled %d", i%3) }

//go:noinline
func siteManyLabels(i int) error { return &QueryError{Query: "labels " + strconv.Itoa(i%2), Err: errNoRows} }

// runLabelled runs fn(i) on a new goroutine under the given labels and
// returns its error; the go statement here is the goroutine's creation site.
//
//go:noinline
func runLabelled(fn func(int) error, i int, labels []string) error {
	ch := make(chan error)
	go labelledWorker(fn, i, labels, ch)
	return <-ch
}

func labelledWorker(fn func(int) error, i int, labels []string, ch chan<- error) {
	pprof.Do(context.Background(), pprof.Labels(labels...), func(context.Context) {
		ch <- fn(i)
	})
}

// labelMap turns a key/value list into the JSON truth's label object.
func labelMap(kv []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// labelKey is a deterministic rendering of a label set, for grouping.
func labelKey(kv []string) string {
	m := labelMap(kv)
	keys := []string{}
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		out += k + "=" + m[k] + ";"
	}
	return out
}

// initErr is made while package main initializes, before main runs: only a
// profiler that starts with the process sees it.
var initErr = makeInitError()

//go:noinline
func makeInitError() error { return fmt.Errorf("errgen: created during %s", "init") }
