// Command parktrace is the ground truth for goerrprof's park tracing. It
// prints "ready <pid>", waits for a line on stdin (the tracer attaches in
// between), then runs blocking patterns whose park counts are exact: before
// every wakeup it waits until the runtime itself shows the blocked goroutine
// as waiting (runtime.Stack), so every blocking call parks exactly once. It
// measures each blocked call from just before to just after it, records the
// wait reason the runtime printed, and prints one JSON line:
//
//	{"go":..., "patterns":[{"name","function","wait_reason","waker","count",
//	  "total_ns","max_ns","min_ns","held_ns"}...], "forever":{...}, "early":{...}}
//
// One goroutine (main.parkedForever) stays parked until exit; another
// (main.parkedEarly) parked before "ready" and is woken first thing after
// the stdin line. parktrace then waits for another stdin line and exits.
//
// With -pingpong N it instead runs N round trips of an unbuffered channel
// ping-pong (after the stdin line) and prints "pingpong <n> ns <elapsed>".
// With -mix K too, K goroutines started before "ready" keep waiting
// meanwhile: half in time.Sleep (main.mixSleeper), a quarter on a timer
// channel (main.mixReceiver), a quarter in a select (main.mixSelecter),
// each for 200-299ms at a time (bench/park's sampled-wait shares).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Name       string   `json:"name"`
	Function   string   `json:"function"`
	WaitReason string   `json:"wait_reason"`
	Reasons    []string `json:"reasons_seen"`
	Waker      string   `json:"waker"`
	Count      int      `json:"count"`
	TotalNs    int64    `json:"total_ns"`
	MaxNs      int64    `json:"max_ns"`
	MinNs      int64    `json:"min_ns"`
	// A lower bound of the time parked, summed: for the handoffs, how long
	// the waker held off after the runtime showed the goroutine waiting;
	// for the sleeps, each sleep's length less 1ms (the timer is set just
	// before parking).
	HeldNs int64 `json:"held_ns"`
}

func summarize(name, function, waker string, reasons []string, d []int64, held int64) result {
	r := result{Name: name, Function: function, Waker: waker, Count: len(d), MinNs: -1, HeldNs: held}
	seen := map[string]bool{}
	for _, s := range reasons {
		if !seen[s] {
			seen[s] = true
			r.Reasons = append(r.Reasons, s)
		}
	}
	if len(r.Reasons) == 1 {
		r.WaitReason = r.Reasons[0]
	}
	for _, v := range d {
		r.TotalNs += v
		if v > r.MaxNs {
			r.MaxNs = v
		}
		if r.MinNs < 0 || v < r.MinNs {
			r.MinNs = v
		}
	}
	return r
}

var stackBuf = make([]byte, 1<<20)

// goid of the calling goroutine, from its own traceback header.
func goid() uint64 {
	n := runtime.Stack(stackBuf[:256], false)
	f := bytes.Fields(stackBuf[:n])
	id, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		panic("cannot parse goroutine id")
	}
	return id
}

// waitParked returns once goroutine id shows as waiting, with the runtime's
// words for why ("chan receive"). Yields in between; never sleeps.
func waitParked(id uint64) string {
	prefix := []byte(fmt.Sprintf("goroutine %d [", id))
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := runtime.Stack(stackBuf, true)
		s := stackBuf[:n]
		if i := bytes.Index(s, prefix); i >= 0 {
			rest := s[i+len(prefix):]
			end := bytes.IndexAny(rest, ",]")
			state := string(rest[:end])
			switch state {
			case "running", "runnable", "syscall", "idle", "copystack", "preempted":
			default:
				return state
			}
		}
		if time.Now().After(deadline) {
			panic(fmt.Sprintf("goroutine %d never parked", id))
		}
		runtime.Gosched()
	}
}

func spinUntil(v *int32, want int32) {
	for atomic.LoadInt32(v) != want {
		runtime.Gosched()
	}
}

// holdFor is how long a waker waits between seeing its goroutine parked
// and waking it, so each park lasts at least this long.
const holdFor = 2 * time.Millisecond

// observe waits until goroutine id is parked, holds, and returns the wait
// reason and the time held (from just after the runtime showed it waiting
// to just before the caller wakes it).
func observe(id uint64, reasons *[]string) int64 {
	*reasons = append(*reasons, waitParked(id))
	t := time.Now()
	time.Sleep(holdFor)
	return int64(time.Since(t))
}

// ---- channel receive, woken by chanSender.

//go:noinline
func chanReceiver(ch <-chan int, d []int64, id chan<- uint64, done chan<- struct{}) {
	id <- goid() // buffered: never parks
	for i := range d {
		t0 := time.Now()
		<-ch
		d[i] = int64(time.Since(t0))
	}
	done <- struct{}{} // buffered
}

//go:noinline
func chanSender(ch chan<- int, v int) { ch <- v }

func runChan(k int) result {
	ch := make(chan int)
	id := make(chan uint64, 1)
	done := make(chan struct{}, 1)
	d := make([]int64, k)
	go chanReceiver(ch, d, id, done)
	g := <-id
	var reasons []string
	var held int64
	for i := 0; i < k; i++ {
		held += observe(g, &reasons)
		chanSender(ch, i)
	}
	<-done
	return summarize("chan", "main.chanReceiver", "main.chanSender", reasons, d, held)
}

// ---- mutex, handed over by mutexUnlocker.

//go:noinline
func mutexWaiter(mu *sync.Mutex, d []int64, phase, acquired *int32, id chan<- uint64) {
	id <- goid()
	for i := range d {
		spinUntil(phase, int32(i+1)) // main holds the lock
		t0 := time.Now()
		mu.Lock()
		d[i] = int64(time.Since(t0))
		mu.Unlock()
		atomic.StoreInt32(acquired, int32(i+1))
	}
}

//go:noinline
func mutexUnlocker(mu *sync.Mutex) { mu.Unlock() }

func runMutex(k int) result {
	var mu sync.Mutex
	var phase, acquired int32
	id := make(chan uint64, 1)
	d := make([]int64, k)
	go mutexWaiter(&mu, d, &phase, &acquired, id)
	g := <-id
	var reasons []string
	var held int64
	for i := 0; i < k; i++ {
		mu.Lock()
		atomic.StoreInt32(&phase, int32(i+1))
		held += observe(g, &reasons)
		mutexUnlocker(&mu)
		spinUntil(&acquired, int32(i+1)) // it locked and unlocked again
	}
	return summarize("mutex", "main.mutexWaiter", "main.mutexUnlocker", reasons, d, held)
}

// ---- select over two channels, woken by selectWaker.

//go:noinline
func selectWaiter(a, b <-chan int, d []int64, id chan<- uint64, done chan<- struct{}) {
	id <- goid()
	for i := range d {
		t0 := time.Now()
		select {
		case <-a:
		case <-b:
		}
		d[i] = int64(time.Since(t0))
	}
	done <- struct{}{}
}

//go:noinline
func selectWaker(b chan<- int, v int) { b <- v }

func runSelect(k int) result {
	a, b := make(chan int), make(chan int)
	id := make(chan uint64, 1)
	done := make(chan struct{}, 1)
	d := make([]int64, k)
	go selectWaiter(a, b, d, id, done)
	g := <-id
	var reasons []string
	var held int64
	for i := 0; i < k; i++ {
		held += observe(g, &reasons)
		selectWaker(b, i)
	}
	<-done
	return summarize("select", "main.selectWaiter", "main.selectWaker", reasons, d, held)
}

// ---- WaitGroup.Wait, released by wgDoner.

//go:noinline
func wgWaiter(wg *sync.WaitGroup, d []int64, phase, released *int32, id chan<- uint64) {
	id <- goid()
	for i := range d {
		spinUntil(phase, int32(i+1)) // the counter is 1
		t0 := time.Now()
		wg.Wait()
		d[i] = int64(time.Since(t0))
		atomic.StoreInt32(released, int32(i+1))
	}
}

//go:noinline
func wgDoner(wg *sync.WaitGroup) { wg.Done() }

func runWaitGroup(k int) result {
	var wg sync.WaitGroup
	var phase, released int32
	id := make(chan uint64, 1)
	d := make([]int64, k)
	go wgWaiter(&wg, d, &phase, &released, id)
	g := <-id
	var reasons []string
	var held int64
	for i := 0; i < k; i++ {
		wg.Add(1)
		atomic.StoreInt32(&phase, int32(i+1))
		held += observe(g, &reasons)
		wgDoner(&wg)
		spinUntil(&released, int32(i+1))
	}
	return summarize("waitgroup", "main.wgWaiter", "main.wgDoner", reasons, d, held)
}

// ---- time.Sleep, woken by the runtime's timers (no user waker).

//go:noinline
func sleeper(dur time.Duration, d []int64, id chan<- uint64, done chan<- struct{}) {
	id <- goid()
	for i := range d {
		t0 := time.Now()
		time.Sleep(dur)
		d[i] = int64(time.Since(t0))
	}
	done <- struct{}{}
}

func runSleep(k int, dur time.Duration) result {
	id := make(chan uint64, 1)
	done := make(chan struct{}, 1)
	d := make([]int64, k)
	go sleeper(dur, d, id, done)
	g := <-id
	reasons := []string{waitParked(g)} // the first sleep; all sleeps say the same
	<-done
	return summarize("sleep", "main.sleeper", "", reasons, d, int64(k)*int64(dur-time.Millisecond))
}

// ---- parked until exit.

//go:noinline
func parkedForever(never <-chan int, id chan<- uint64) {
	id <- goid()
	<-never
}

//go:noinline
func mixSleeper(d time.Duration) {
	for {
		time.Sleep(d)
	}
}

//go:noinline
func mixReceiver(d time.Duration) {
	for {
		<-time.After(d)
	}
}

//go:noinline
func mixSelecter(d time.Duration, quit <-chan struct{}) {
	for {
		select {
		case <-time.After(d):
		case <-quit:
			return
		}
	}
}

func startMix(k int) {
	quit := make(chan struct{})
	for i := 0; i < k; i++ {
		d := 200*time.Millisecond + time.Duration(i%100)*time.Millisecond
		switch i % 4 {
		case 0, 1:
			go mixSleeper(d)
		case 2:
			go mixReceiver(d)
		default:
			go mixSelecter(d, quit)
		}
	}
}

func pingpong(n int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	fmt.Printf("pingpong %d ns %d\n", n, time.Since(start).Nanoseconds())
}

// ---- parked before the tracer came, woken by wakeEarly after.

//go:noinline
func parkedEarly(early <-chan int, id chan<- uint64, done chan<- struct{}) {
	id <- goid()
	<-early
	done <- struct{}{}
}

//go:noinline
func wakeEarly(early chan<- int) { early <- 1 }

func main() {
	pp := flag.Int("pingpong", 0, "run this many channel round trips instead")
	mix := flag.Int("mix", 0, "with -pingpong: this many goroutines waiting meanwhile")
	flag.Parse()
	in := bufio.NewReader(os.Stdin)
	if *pp > 0 {
		startMix(*mix)
		fmt.Printf("ready %d\n", os.Getpid())
		in.ReadString('\n')
		pingpong(*pp)
		in.ReadString('\n')
		return
	}

	early := make(chan int)
	eid := make(chan uint64, 1)
	edone := make(chan struct{}, 1)
	go parkedEarly(early, eid, edone)
	earlyReason := waitParked(<-eid)
	fmt.Printf("ready %d\n", os.Getpid())
	in.ReadString('\n')
	wakeEarly(early)
	<-edone

	never := make(chan int)
	fid := make(chan uint64, 1)
	go parkedForever(never, fid)
	foreverReason := waitParked(<-fid)

	out := struct {
		Go       string   `json:"go"`
		Patterns []result `json:"patterns"`
		Forever  result   `json:"forever"`
		Early    result   `json:"early"`
	}{Go: runtime.Version()}
	out.Early = result{Name: "early", Function: "main.parkedEarly", WaitReason: earlyReason,
		Waker: "main.wakeEarly", Count: 1}
	out.Patterns = append(out.Patterns, runChan(40))
	out.Patterns = append(out.Patterns, runMutex(25))
	out.Patterns = append(out.Patterns, runSelect(25))
	out.Patterns = append(out.Patterns, runWaitGroup(20))
	out.Patterns = append(out.Patterns, runSleep(5, 20*time.Millisecond))
	out.Forever = result{Name: "forever", Function: "main.parkedForever",
		WaitReason: foreverReason, Count: 1}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
	in.ReadString('\n')
	close(never)
}
