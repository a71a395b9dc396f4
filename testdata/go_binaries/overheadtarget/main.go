// Command overheadtarget times a //go:noinline function called in a tight
// loop, for bench/overhead's raw uprobe cost. With -wait it prints
// "ready <pid>" and waits for a stdin line (the probe is attached by then),
// then prints "ns/call <float> calls <m> sum <x>".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"time"
)

//go:noinline
func probeTarget(x int) int { return x*3 + 1 }

func main() {
	m := flag.Int("m", 200000, "calls")
	wait := flag.Bool("wait", false, "print 'ready <pid>' and wait for a line on stdin")
	flag.Parse()
	if *wait {
		fmt.Printf("ready %d\n", os.Getpid())
		bufio.NewReader(os.Stdin).ReadString('\n') // EOF releases too
	}
	sum := 0
	start := time.Now()
	for i := 0; i < *m; i++ {
		sum += probeTarget(i)
	}
	elapsed := time.Since(start)
	fmt.Printf("ns/call %.3f calls %d sum %d\n", float64(elapsed.Nanoseconds())/float64(*m), *m, sum)
}
