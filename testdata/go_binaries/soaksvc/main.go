// soaksvc is the soak test's service and its load. As a service it answers
// HTTP on loopback, creating errors on bad input at known rates and counting
// them itself; with -load it sends a seeded sequence of requests and prints
// a digest of every response, so a profiled run can be compared byte for
// byte with an unprofiled one.
//
//	soaksvc                       # prints "listening 127.0.0.1:PORT"
//	soaksvc -load ADDR -n N -seed S
//	soaksvc -stats ADDR           # the service's error counts, as JSON
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

// ValidationError is the service's own error type.
type ValidationError struct {
	Field string
	Value int
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %d", e.Field, e.Value)
}

var errNotFound = errors.New("not found")

// Errors the service created, by kind: the truth the profile must equal.
var counts struct {
	parse, invalid, notFound atomic.Int64
}

//go:noinline
func parseID(s string) (int, error) {
	id, err := strconv.Atoi(s) // *strconv.NumError on bad input
	if err != nil {
		counts.parse.Add(1)
		return 0, err
	}
	if id < 0 || id%97 == 13 {
		counts.invalid.Add(1)
		return 0, &ValidationError{Field: "id", Value: id}
	}
	return id, nil
}

//go:noinline
func lookup(id int) (string, error) {
	if id%7 == 3 {
		counts.notFound.Add(1)
		return "", fmt.Errorf("item %d: %w", id, errNotFound)
	}
	return fmt.Sprintf("item-%d:%x", id, id*2654435761%1000003), nil
}

// A few goroutines per request park on a channel: work for --goroutines.
func fanOut(id int) int {
	var wg sync.WaitGroup
	results := make(chan int, 3)
	for k := 0; k < 3; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			results <- (id + k) % 11
		}(k)
	}
	wg.Wait()
	close(results)
	sum := 0
	for r := range results {
		sum += r
	}
	return sum
}

func handleItem(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := lookup(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, "%s sum=%d\n", body, fanOut(id))
}

func handleStats(w http.ResponseWriter, r *http.Request) {
	json.NewEncoder(w).Encode(map[string]int64{
		"parse":     counts.parse.Load(),
		"invalid":   counts.invalid.Load(),
		"not_found": counts.notFound.Load(),
	})
}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soaksvc:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/item", handleItem)
	mux.HandleFunc("/stats", handleStats)
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()
	// Ends when its stdin closes: the soak script holds it.
	go func() {
		io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		os.Exit(0)
	}()
	http.Serve(ln, mux)
}

// load sends n requests (ids drawn from seed, some malformed) over
// `conns` keep-alive connections and prints the digest of all responses
// in request order.
func load(addr string, n int, seed int64, conns int) {
	rng := rand.New(rand.NewSource(seed))
	queries := make([]string, n)
	for i := range queries {
		switch v := rng.Intn(100); {
		case v < 10:
			queries[i] = fmt.Sprintf("x%d", rng.Intn(1000)) // not a number
		case v < 15:
			queries[i] = strconv.Itoa(-rng.Intn(1000) - 1) // negative
		default:
			queries[i] = strconv.Itoa(rng.Intn(100000))
		}
	}
	bodies := make([][]byte, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				resp, err := client.Get("http://" + addr + "/item?id=" + queries[i])
				if err != nil {
					fmt.Fprintln(os.Stderr, "soaksvc: load:", err)
					os.Exit(1)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				bodies[i] = append([]byte(fmt.Sprintf("%d ", resp.StatusCode)), b...)
			}
		}()
	}
	wg.Wait()
	h := sha256.New()
	for _, b := range bodies {
		h.Write(b)
	}
	fmt.Printf("sha256 %x requests %d\n", h.Sum(nil), n)
}

func main() {
	loadAddr := flag.String("load", "", "send load to this address instead of serving")
	n := flag.Int("n", 1000, "requests to send")
	seed := flag.Int64("seed", 1, "seed of the request sequence")
	conns := flag.Int("conns", 4, "connections to send over")
	statsAddr := flag.String("stats", "", "print this service's error counts")
	flag.Parse()
	if *statsAddr != "" {
		resp, err := http.Get("http://" + *statsAddr + "/stats")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soaksvc: stats:", err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, resp.Body)
		resp.Body.Close()
		return
	}
	if *loadAddr != "" {
		load(*loadAddr, *n, *seed, *conns)
		return
	}
	serve()
}
