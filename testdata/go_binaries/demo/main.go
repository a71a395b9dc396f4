// Command demo is the bundled goerrprof target: a few labelled goroutines
// keep creating a mix of errors until killed or -duration elapses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"time"
)

type ValidationError struct {
	Field string
	Code  int
}

func (e ValidationError) Error() string { return fmt.Sprintf("invalid %s (code %d)", e.Field, e.Code) }

var errNotFound = errors.New("not found")

//go:noinline
func lookupUser(id int) error {
	if id%3 == 0 {
		return fmt.Errorf("lookup user %d: %w", id, errNotFound)
	}
	return errors.New("user service unavailable")
}

//go:noinline
func validateOrder(n int) error { return ValidationError{Field: "quantity", Code: n % 7} }

//go:noinline
func loadConfig(n int) error {
	_, err := os.Open(fmt.Sprintf("/nonexistent/demo/config-%d.yaml", n%4))
	return err
}

// worker creates one error per tick until ctx is done.
func worker(ctx context.Context, interval time.Duration, work func(int) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = work(n)
		}
	}
}

func main() {
	duration := flag.Duration("duration", 0, "stop after this long (0: run until killed)")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between errors per goroutine")
	flag.Parse()

	ctx := context.Background()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	fmt.Printf("ready %d\n", os.Getpid())

	jobs := map[string]func(int) error{"users": lookupUser, "orders": validateOrder, "config": loadConfig}
	var wg sync.WaitGroup
	for name, work := range jobs {
		wg.Add(1)
		go func(name string, work func(int) error) {
			defer wg.Done()
			// Labels let the profiler attribute errors to a logical task.
			pprof.Do(ctx, pprof.Labels("service", name), func(ctx context.Context) {
				worker(ctx, *interval, work)
			})
		}(name, work)
	}
	wg.Wait()
}
