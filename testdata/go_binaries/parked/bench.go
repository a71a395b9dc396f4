package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"
)

// ticker wakes every millisecond and records the largest lateness seen
// since the last reset: a pause of the process (stop-the-world, a stopped
// thread) shows up as lateness.
type ticker struct{ maxLate int64 }

func startTicker() *ticker {
	t := &ticker{}
	go func() {
		const period = time.Millisecond
		tk := time.NewTicker(period)
		last := time.Now()
		for now := range tk.C {
			late := int64(now.Sub(last) - period)
			for {
				old := atomic.LoadInt64(&t.maxLate)
				if late <= old || atomic.CompareAndSwapInt64(&t.maxLate, old, late) {
					break
				}
			}
			last = now
		}
	}()
	return t
}

// serve answers one command per line on stdin:
//
//	mark      reset the ticker's maximum lateness; replies "marked"
//	delay     replies "delay <max lateness ns since mark>"
//	selfdump  times runtime.Stack(all) and the debug=2 goroutine profile;
//	          replies "selfdump <stack ns> <profile ns> <bytes> <max lateness ns>"
//	gc        runs a GC (which adds every P's cached allocation counts to
//	          the runtime's totals); replies "gc"
//	alloc N   allocates N objects of 10240 bytes; replies "alloc N"
//	allocloop starts a goroutine allocating 300-byte objects, each after
//	          ~1 us of work, until allocstop; replies "allocloop"
//	allocstop stops it; replies "allocstop <objects it allocated>"
//
// Any other line, or EOF, ends the program.
func serve(t *ticker) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "mark":
			if t != nil {
				atomic.StoreInt64(&t.maxLate, 0)
			}
			fmt.Println("marked")
		case "delay":
			var late int64
			if t != nil {
				late = atomic.LoadInt64(&t.maxLate)
			}
			fmt.Println("delay", late)
		case "selfdump":
			if t != nil {
				atomic.StoreInt64(&t.maxLate, 0)
			}
			buf := make([]byte, 64<<20)
			start := time.Now()
			n := runtime.Stack(buf, true)
			stack := time.Since(start)
			start = time.Now()
			pprof.Lookup("goroutine").WriteTo(io.Discard, 2)
			prof := time.Since(start)
			// Let the ticker observe the pause before reporting it.
			time.Sleep(5 * time.Millisecond)
			var late int64
			if t != nil {
				late = atomic.LoadInt64(&t.maxLate)
			}
			fmt.Println("selfdump", stack.Nanoseconds(), prof.Nanoseconds(), n, late)
		case "gc":
			runtime.GC()
			fmt.Println("gc")
		case "allocloop":
			stop, done := make(chan struct{}), make(chan int)
			allocStop, allocDone = stop, done
			go allocLoop(stop, done)
			fmt.Println("allocloop")
		case "allocstop":
			if allocStop == nil {
				return
			}
			close(allocStop)
			fmt.Println("allocstop", <-allocDone)
			allocStop = nil
		default:
			var n int
			if _, err := fmt.Sscanf(in.Text(), "alloc %d", &n); err != nil {
				return
			}
			for i := 0; i < n; i++ {
				allocSink[i%len(allocSink)] = new([10240]byte)
			}
			fmt.Println("alloc", n)
		}
	}
}

var (
	allocStop  chan struct{}
	allocDone  chan int
	loopSink   *[300]byte
	loopWorkTo uint64
)

// allocLoop allocates until stop, paced by a little work so that a span
// of its size class lasts tens of microseconds, and reports how many.
func allocLoop(stop chan struct{}, done chan int) {
	n := 0
	x := uint64(88172645463325252)
	for {
		select {
		case <-stop:
			loopWorkTo = x
			done <- n
			return
		default:
		}
		loopSink = new([300]byte)
		n++
		for j := 0; j < 500; j++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
}

// allocSink keeps the "alloc" command's objects from being optimised away
// without growing (a growing slice would allocate in other size classes).
var allocSink [64]*[10240]byte
