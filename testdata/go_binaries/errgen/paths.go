package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
)

// Shapes where the interface is built before a branch and only some of the
// paths after it carry the value on. The planner once reported each as
// "created on some paths only" or "data word not held before the merge"
// (shapes found in the standard library and esbuild); every call here
// creates exactly one error, and the profile must see it.
var pathScenarios = []scenario{
	{"zero_size_value", siteZeroSize, 20},
	{"type_tested_new", siteTypeTested, 21},
	{"named_result_defer", siteNamedDefer, 23},
	{"loop_carried_new", siteLoopCarried, 24},
	{"loop_carried_call", siteLoopCall, 26},
	{"float_range", siteFloatRange, 27},
	{"int_range", siteIntRange, 28},
	{"flag_bool", siteFlagBool, 30},
	{"append_collected", siteAppendCollected, 7},
	{"rebox_asserted", siteRebox, 31},
}

// ZeroError has no fields: its data word is runtime.zerobase, a static
// address the code loads only after the paths merge (internal/poll's
// errClosing has this shape).
type ZeroError struct{}

func (ZeroError) Error() string { return "errgen: zero-size error" }

var (
	errPathSentinel = errors.New("errgen: path sentinel")
	zeroValue       = ZeroError{}
	pathCount       int
)

func zeroOr(sentinel bool) error {
	if sentinel {
		return errPathSentinel
	}
	return zeroValue
}

//go:noinline
func siteZeroSize(i int) error {
	if pathCount < 0 {
		return nil
	}
	return zeroOr(i < 0)
}

func isOwnType(err error) bool {
	switch err.(type) {
	case *QueryError, *MultiError, CodeError:
		return true
	}
	return false
}

// A type switch inlined after the creation compares the new value's itab
// with other itabs: a test of the value, not a use of the itab.
//
//go:noinline
func siteTypeTested(i int) error {
	var err error
	if i >= 0 {
		err = errors.New("errgen: type-tested after creation")
	} else {
		err = errPathSentinel
	}
	if isOwnType(err) {
		return &QueryError{Query: "never", Err: err}
	}
	return err
}

// A named result written before a deferred call runs: the paths with and
// without the deferred call both return the one value.
//
//go:noinline
func siteNamedDefer(i int) (err error) {
	if i%2 == 0 {
		defer func() { pathCount++ }()
	}
	err = errors.New("errgen: named result before a defer")
	return
}

// The error made in a loop rides the loop's variables until the loop ends
// (net's tryOneName keeps its last *DNSError this way): past the creation
// the paths loop back, leave, or drop the value, and only the first point
// after it is on all of them.
//
//go:noinline
func siteLoopCarried(i int) error {
	var last error
	for try := 0; try <= i%3; try++ {
		if try == i%3 {
			last = &QueryError{Query: "loop-carried", Err: errPathSentinel}
			continue
		}
		pathCount += try
	}
	return last
}

//go:noinline
func newLoopError(try int) *QueryError {
	return &QueryError{Query: fmt.Sprint("loop-call-", try%2), Err: errPathSentinel}
}

// The same with a constructor's result (net's lookupIPAddr and newDNSError):
// the data word is not an allocation the planner sees.
//
//go:noinline
func siteLoopCall(i int) error {
	err := error(newLoopError(i))
	for j := 0; j < i%4; j++ {
		if pathCount < 0 {
			err = nil
			break
		}
		pathCount += j
	}
	return err
}

// A float out of range: from Go 1.26, internal/strconv's atof64 picks its
// range error or nil with conditional moves, not a branch.
//
//go:noinline
func siteFloatRange(i int) error {
	_, err := strconv.ParseFloat("1e40"+strconv.Itoa(i%10), 64)
	return err
}

// An integer out of range: strconv's ParseInt loads its range error's itab
// on two paths that merge before the returns that build the error.
//
//go:noinline
func siteIntRange(i int) error {
	_, err := strconv.ParseInt("9223372036854775808"+strconv.Itoa(i%10), 10, 64)
	return err
}

// flag's bool parsing: strconv.ParseBool's *NumError is built beside its
// new object and carried on through a phi of the caller's error (flag's
// boolValue.Set) that the planner's walk cannot pair; it is probed at the
// reference since. flag then folds it into an error of its own, which is
// what errgen sees: the NumError is counted exactly by the truth test.
//
//go:noinline
func siteFlagBool(i int) error {
	fs := flag.NewFlagSet("errgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool("b", false, "")
	return fs.Parse([]string{"-b=maybe"})
}


// paramErrors collects errors the way aws-sdk-go's generated Validate
// methods do (ErrInvalidParams.Add, inlined): a constructor's *NumError is
// boxed into an error as it is stored into a slice element, whose address
// is a base and an index register. Each call of siteAppendCollected
// creates two and wraps the second (the truth test counts both exactly).
type paramErrors struct{ errs []error }

func (p *paramErrors) Add(err error) { p.errs = append(p.errs, err) }

//go:noinline
func newParamError(field string) *strconv.NumError {
	return &strconv.NumError{Func: "Validate", Num: field, Err: strconv.ErrRange}
}

//go:noinline
func siteAppendCollected(i int) error {
	var p paramErrors
	if i >= 0 {
		p.Add(newParamError("DurationSeconds"))
	}
	if i > -2 {
		p.Add(newParamError("RoleArn"))
	}
	if len(p.errs) < 2 {
		return nil
	}
	return fmt.Errorf("errgen: invalid parameters: %v; %w", p.errs[0], p.errs[1])
}

// reboxQuery returns err itself when it is a *QueryError already, else a
// new one wrapping it (json v2's newSemanticErrorWithPosition). The
// compiler keeps the itab it tested err against in a register and loads it
// again at each merge on the way to `return qe`: those references build
// nothing. Only the new object is a creation, counted where it is made.
//
//go:noinline
func reboxQuery(err error, query string) error {
	qe, _ := err.(*QueryError)
	if qe == nil {
		qe = &QueryError{Query: query, Err: err}
	}
	if qe.Query == "" {
		qe.Query = query
	}
	for n := 0; n < len(query)%3; n++ {
		pathCount += n
	}
	return qe
}

// One new *QueryError per call; the second call hands the same value back.
//
//go:noinline
func siteRebox(i int) error {
	err := reboxQuery(errPathSentinel, "rebox")
	return reboxQuery(err, "rebox")
}
