package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

// scenario is one error-creating site; count is scaled by -n.
type scenario struct {
	name  string
	fn    func(i int) error
	count int
}

// Counts are distinct so a profiler's per-site totals identify the site.
var baseScenarios = []scenario{
	{"errors_new_call", siteNewCall, 1},
	{"errors_new_inline", siteNewInline, 2},
	{"errorf_plain", siteErrorfPlain, 3},
	{"errorf_wrap_chain", siteWrapChain, 4},
	{"os_open_missing", siteOpenMissing, 5},
	{"dial_refused", siteDialRefused, 6},
	{"code_error_value", siteCodeValue, 7},
	{"query_error_ptr", siteQueryPtr, 8},
	{"multi_error", siteMulti, 9},
	{"atoi_syntax", siteAtoi, 10},
	{"json_syntax", siteJSON, 11},
	{"recovered_panic", sitePanic, 12},
}

var errNoRows = errors.New("no rows")

// newErr is a func value so errors.New runs as its own (non-inlined) frame.
var newErr = errors.New

// refusedAddr is a loopback address nobody listens on; set by main.
var refusedAddr string

//go:noinline
func siteNewCall(i int) error { return newErr("errgen: errors.New via func value") }

//go:noinline
func siteNewInline(i int) error { return errors.New("errgen: errors.New inlined") }

//go:noinline
func siteErrorfPlain(i int) error { return fmt.Errorf("errgen: plain errorf %d", i) }

//go:noinline
func siteWrapChain(i int) error { return fmt.Errorf("outer %d: %w", i, wrapMiddle(i)) }

//go:noinline
func wrapMiddle(i int) error { return fmt.Errorf("middle: %w", wrapInner(i)) }

//go:noinline
func wrapInner(i int) error { return fmt.Errorf("inner: %w", errors.New("root cause")) }

//go:noinline
func siteOpenMissing(i int) error {
	f, err := os.Open(fmt.Sprintf("/nonexistent/goerrprof/missing-%d.txt", i))
	if err == nil {
		f.Close()
		return errors.New("errgen: missing file exists")
	}
	return err
}

//go:noinline
func siteDialRefused(i int) error {
	c, err := net.Dial("tcp", refusedAddr)
	if err == nil {
		c.Close()
		return errors.New("errgen: dial unexpectedly succeeded")
	}
	return err
}

//go:noinline
func siteCodeValue(i int) error {
	return CodeError{Code: 400 + i, Msg: "bad request " + strconv.Itoa(i)}
}

//go:noinline
func siteQueryPtr(i int) error {
	return &QueryError{Query: "q" + strconv.Itoa(i), Err: errNoRows}
}

//go:noinline
func siteMulti(i int) error {
	return &MultiError{Op: "batch " + strconv.Itoa(i),
		Errs: []error{&QueryError{Query: "inner", Err: errNoRows}, io.ErrUnexpectedEOF}}
}

//go:noinline
func siteAtoi(i int) error {
	_, err := strconv.Atoi("x")
	return err
}

//go:noinline
func siteJSON(i int) error {
	var v interface{}
	return json.Unmarshal([]byte("{bad json"), &v)
}

//go:noinline
func sitePanic(i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = r.(error)
		}
	}()
	panic(&PanicError{Reason: "boom " + strconv.Itoa(i)})
}

// closedPort returns a loopback address whose listener was just closed,
// so dialing it fails with ECONNREFUSED.
func closedPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
