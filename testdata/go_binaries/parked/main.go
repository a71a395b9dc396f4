// Command parked starts a known set of goroutines that block in known ways
// (channel receive, sync.Mutex, select, time.Sleep, sync.WaitGroup,
// sync.Cond; some created by non-main goroutines, some with pprof labels),
// waits until every one of them has parked, prints "ready <pid>" and then
// the ground truth: its own goroutine profile with debug=2, and one JSON
// line {"labels": {"<goid>": {key: value}}}. It then serves commands on
// stdin (see serve) and exits on EOF or any other line.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	never      = make(chan int)   // nobody ever sends
	selA, selB = make(chan int), make(chan int)
	mu         sync.Mutex          // held by main forever
	wg         sync.WaitGroup      // never done
	cond       = sync.NewCond(&sync.Mutex{})

	labelsMu sync.Mutex
	labelsOf = map[string]map[string]string{}
)

// goid parses the calling goroutine's id from its own stack header.
func goid() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	return s[:strings.IndexByte(s, ' ')]
}

func recordLabels(l map[string]string) {
	labelsMu.Lock()
	labelsOf[goid()] = l
	labelsMu.Unlock()
}

// Small enough to be inlined into its callers: stacks get inlined frames.
func waitOn(ch chan int) int { return <-ch }

func receiver(ch chan int) { waitOn(ch) }

//go:noinline
func startReceivers(n int) {
	for i := 0; i < n; i++ {
		go receiver(never)
	}
}

func lockWaiter() {
	mu.Lock()
	mu.Unlock()
}

// A non-main creator: its children are "created by main.spawnLockers in
// goroutine <its id>"; it then blocks itself.
func spawnLockers(m int) {
	for i := 0; i < m; i++ {
		go lockWaiter()
	}
	<-never
}

func selectWaiter() {
	select {
	case <-selA:
	case <-selB:
	}
}

func sleeper() { time.Sleep(1000 * time.Hour) }

func wgWaiter() { wg.Wait() }

func condWaiter() {
	cond.L.Lock()
	for {
		cond.Wait()
	}
}

func labelChild(l map[string]string) {
	recordLabels(l) // inherited from the creator
	<-never
}

// Labels set with pprof.Do; the goroutine it starts inherits them.
func labelled(i int) {
	pprof.Do(context.Background(), pprof.Labels("role", "labelled", "worker", strconv.Itoa(i)),
		func(ctx context.Context) {
			l := map[string]string{"role": "labelled", "worker": strconv.Itoa(i)}
			recordLabels(l)
			go labelChild(l)
			waitOn(never)
		})
}

// Many labels set with SetGoroutineLabels: before Go 1.24 a map that grew.
// With 27 entries the last insert starts growing it from 4 to 8 buckets
// and evacuates only some, so the map is left mid-growth (oldbuckets set).
func manyLabels(n int) {
	l := map[string]string{}
	var kv []string
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("key%02d", i), fmt.Sprintf("value-%d", i*i)
		l[k] = v
		kv = append(kv, k, v)
	}
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(kv...)))
	recordLabels(l)
	<-never
}

// deepWait blocks under n frames of itself: Go's dump elides the middle
// of stacks this deep.
//
//go:noinline
func deepWait(n int) int {
	if n == 0 {
		return <-never
	}
	return deepWait(n-1) + 1
}

type config struct {
	recv, lockers, selects, sleepers, wgs, conds, labelled, labelChildren, many, deep int
}

func (c config) total() int {
	// +1: spawnLockers itself.
	return c.recv + c.lockers + 1 + c.selects + c.sleepers + c.wgs + c.conds + c.labelled +
		c.labelChildren + c.many + c.deep
}

// parkedStates are the header words of goroutines that reached their
// blocking call (the mutex and WaitGroup words differ across releases).
var parkedStates = []string{"chan receive", "select", "sleep", "semacquire", "sync.Mutex.Lock",
	"sync.Cond.Wait", "sync.WaitGroup.Wait"}

// countParked counts the goroutines running main code that are parked in
// one of parkedStates, from the runtime's own dump (no sleeping: the caller
// yields between polls).
func countParked(buf []byte) (int, []byte) {
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		open, close := bytes.IndexByte(block, '['), bytes.IndexByte(block, ']')
		if open < 0 || close < open || !bytes.Contains(block, []byte("\nmain.")) {
			continue
		}
		state := string(block[open+1 : close])
		if i := strings.IndexByte(state, ','); i >= 0 {
			state = state[:i]
		}
		for _, s := range parkedStates {
			if state == s {
				count++
				break
			}
		}
	}
	return count, buf[:cap(buf)]
}

func main() {
	n := flag.Int("n", 5, "goroutines blocked on a channel receive (the scale)")
	bench := flag.Bool("bench", false, "no truth dump; run a ticker measuring scheduling delay")
	churners := flag.Int("churn", 0, "instead: N goroutines that never stop changing; no truth")
	gc := flag.Bool("gc", false, "run a GC once all are parked: it stamps their g.waitsince")
	flag.Parse()
	if *churners > 0 {
		churn(*churners)
		fmt.Printf("ready %d\n", os.Getpid())
		serve(nil)
		return
	}

	mu.Lock()
	wg.Add(1)
	c := config{recv: *n, lockers: 3, selects: 4, sleepers: 2, wgs: 2, conds: 2, labelled: 2,
		labelChildren: 2, many: 1, deep: 1}
	startReceivers(c.recv)
	go spawnLockers(c.lockers)
	for i := 0; i < c.selects; i++ {
		go selectWaiter()
	}
	for i := 0; i < c.sleepers; i++ {
		go sleeper()
	}
	for i := 0; i < c.wgs; i++ {
		go wgWaiter()
	}
	for i := 0; i < c.conds; i++ {
		go condWaiter()
	}
	for i := 0; i < c.labelled; i++ {
		go labelled(i)
	}
	go manyLabels(27)
	go deepWait(130)

	buf := make([]byte, 1<<20)
	for {
		var parked int
		parked, buf = countParked(buf)
		if parked == c.total() {
			break
		}
		runtime.Gosched()
	}
	buf = nil
	// Every labelled goroutine recorded its labels before blocking.
	for {
		labelsMu.Lock()
		done := len(labelsOf) == c.labelled+c.labelChildren+c.many
		labelsMu.Unlock()
		if done {
			break
		}
		runtime.Gosched()
	}

	if *gc {
		// Two cycles: after only the process's first one, g.waitsince was
		// seen to stay 0 ("never stamped").
		runtime.GC()
		runtime.GC()
	}
	var t *ticker
	if *bench {
		t = startTicker()
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	fmt.Fprintf(out, "ready %d\n", os.Getpid())
	if !*bench {
		pprof.Lookup("goroutine").WriteTo(out, 2)
		labelsMu.Lock()
		js, _ := json.Marshal(map[string]interface{}{"labels": labelsOf})
		labelsMu.Unlock()
		fmt.Fprintf(out, "%s\n", js)
	}
	out.Flush()
	serve(t)
}
