// Command errgen creates a known set of errors and prints the ground truth
// (sites, counts, types, messages, unwrap chains) as one JSON line.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
)

type link struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	// What an out-of-process profiler shows: see profileMessage.
	ProfileMessage string `json:"profile_message"`
}

type result struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Count    int    `json:"count"`
	Type     string `json:"type"`
	Message  string `json:"message"`
	// What an out-of-process profiler shows: see profileMessage.
	ProfileMessage string `json:"profile_message"`
	Chain          []link `json:"chain"`
	// The creating goroutine: its pprof labels, and the function whose go
	// statement started it ("" for the main goroutine).
	Labels    map[string]string `json:"labels"`
	CreatedBy string            `json:"created_by"`
	// The creation as a profile's leaf must show it (see leafFrames).
	Leaf []string `json:"leaf,omitempty"`
}

// chain walks the Unwrap tree depth-first, the error itself first.
func chain(err error, out []link) []link {
	if err == nil {
		return out
	}
	out = append(out, link{fmt.Sprintf("%T", err), err.Error(), profileMessage(err)})
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = chain(u.Unwrap(), out)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = chain(e, out)
		}
	}
	return out
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "errgen: "+format+"\n", args...)
	os.Exit(1)
}

func emit(v interface{}) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fail("%v", err)
	}
}

func main() {
	types := flag.Bool("types", false, "print the layout of errgen's own error types and exit")
	n := flag.Int("n", 1, "multiply every scenario's count by N")
	wait := flag.Bool("wait", false, "print 'ready <pid>' and wait for a line on stdin before working")
	fatal := flag.Bool("fatal-panic", false, "end with a panic nothing recovers (exit status 2)")
	storm := flag.Int("storm", 0, "only create N errors at one site as fast as possible, then -calm at another")
	calm := flag.Int("calm", 4, "with -storm: errors at the calm site after the storm")
	work := flag.Int("storm_work", 0, "with -storm: rounds of work (~1 ns each) before each error")
	hold := flag.Bool("hold", false, "with -storm: after the truth line, wait for a line on stdin before exiting")
	flag.Parse()

	if *types {
		infos := []typeInfo{}
		for _, e := range ownErrorTypes {
			infos = append(infos, describeType(e))
		}
		emit(map[string]interface{}{"go_version": runtime.Version(), "error_types": infos})
		return
	}
	if *n < 1 {
		fail("-n must be >= 1")
	}
	var err error
	if refusedAddr, err = closedPort(); err != nil {
		fail("cannot reserve a loopback port: %v", err)
	}
	if *wait {
		// Stdout is unbuffered, so the line is visible before we block.
		fmt.Printf("ready %d\n", os.Getpid())
		// EOF also releases us so a closed stdin cannot hang the run.
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	if *churn {
		runChurn()
	}
	if *storm > 0 {
		runStorm(*storm, *calm, *work)
		if *hold {
			// Alive, and creating nothing more, until told (or stdin closes).
			bufio.NewReader(os.Stdin).ReadString('\n')
		}
		return
	}

	results := []result{}
	panics := []panicResult{}
	scenarios := append(append(append(append(append(baseScenarios, go120Scenarios...),
		goroutineScenarios...), inlinedScenarios...), pathScenarios...), go127Scenarios...)
	scenarios = append(append(scenarios, dnsScenarios...), go121Scenarios...)
	goroutine := map[string]bool{}
	for _, s := range goroutineScenarios {
		goroutine[s.name] = true
	}
	creator := runtime.FuncForPC(reflect.ValueOf(runLabelled).Pointer()).Name()
	for _, s := range scenarios {
		fn := runtime.FuncForPC(reflect.ValueOf(s.fn).Pointer()).Name()
		index := map[string]int{} // message and labels -> position in results
		for i := 0; i < s.count**n; i++ {
			var e error
			labels, createdBy := []string{}, ""
			if goroutine[s.name] {
				labels, createdBy = labelsFor(s.name, i), creator
				e = runLabelled(s.fn, i, labels)
			} else {
				e = s.fn(i)
			}
			if e == nil {
				fail("scenario %s returned nil", s.name)
			}
			if s.name == "recovered_panic" { // sitePanic returns the value it recovered
				notePanic(&panics, s.name, fn, e, true)
			}
			msg := e.Error()
			key := msg + "\x00" + labelKey(labels)
			if k, ok := index[key]; ok {
				results[k].Count++
				continue
			}
			index[key] = len(results)
			results = append(results, result{s.name, fn, 1, fmt.Sprintf("%T", e), msg,
				profileMessage(e), chain(e, nil), labelMap(labels), createdBy, leafFrames[s.name]})
		}
	}
	for _, s := range panicScenarios {
		fn := runtime.FuncForPC(reflect.ValueOf(s.fn).Pointer()).Name()
		for i := 0; i < s.count**n; i++ {
			r := runPanic(s.fn, i)
			if r == nil {
				fail("scenario %s did not panic", s.name)
			}
			notePanic(&panics, s.name, fn, r, true)
		}
	}
	if *fatal {
		notePanic(&panics, "fatal_panic", "main.siteFatalPanic", "errgen: fatal panic", false)
	}
	emit(map[string]interface{}{"go_version": runtime.Version(), "pid": os.Getpid(), "scenarios": results,
		"panics": panics, "dns_server": dnsServer, "dns_servers": dnsServers,
		"dns_servfail_answers": dnsServfails})
	if *fatal {
		siteFatalPanic()
	}
}
