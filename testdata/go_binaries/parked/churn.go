package main

import (
	"runtime"
	"sync"
	"time"
)

// churn keeps n goroutines changing under a reader's feet: short-lived
// children (gs die and are reused), stacks that grow and shrink (copied
// to new memory), mutex hand-offs, brief sleeps and yields.
func churn(n int) {
	// A loop without calls: only asynchronous preemption (a signal that
	// injects a call to runtime.asyncPreempt) takes it off its thread.
	// One, so the churners keep a processor.
	go spin()
	var mu sync.Mutex
	shared := 0
	for i := 0; i < n; i++ {
		go func(i int) {
			for round := 0; ; round++ {
				c := make(chan int)
				go func() { c <- deep(round%200 + i%7) }()
				<-c
				mu.Lock()
				shared++
				mu.Unlock()
				if round%3 == 0 {
					time.Sleep(time.Microsecond)
				} else {
					runtime.Gosched()
				}
			}
		}(i)
	}
}

// deep recurses with a frame big enough to grow the stack past its
// starting size.
//
//go:noinline
func deep(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%64])
}

var spins uint64

//go:noinline
func spin() {
	for {
		spins++
	}
}
