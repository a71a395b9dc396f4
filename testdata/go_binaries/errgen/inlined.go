package main

import "errors"

// Helpers the compiler inlines into their callers, each creating an error
// on some paths only. The probe can sit only where the error value leaves
// the function (past the branch, at the return), yet a profile's leaf must
// be the creation itself, with the helper's inlined frames above it.
var inlinedScenarios = []scenario{
	{"helper_branch", siteHelperBranch, 17},
	{"helper_multi_return", siteHelperMultiReturn, 18},
	{"helper_twice", siteHelperTwice, 19},
}

// leafFrames is each scenario's creation as a profile must show it: the
// functions from the creating instruction up to the scenario function,
// innermost first. The list is the same whether a call is inlined or not,
// so it holds on every Go release. Not listed: creations inside library
// code that changes between releases, and helper_multi_return, whose three
// allocations merge before the one itab reference (goerrprof shows that
// merge's line in siteHelperMultiReturn as the leaf).
var leafFrames = map[string][]string{
	"errors_new_call":   {"errors.New", "main.siteNewCall"},
	"errors_new_inline": {"errors.New", "main.siteNewInline"},
	"query_error_ptr":   {"main.siteQueryPtr"},
	"helper_branch":     {"errors.New", "main.helperBranch", "main.siteHelperBranch"},
	"helper_twice":      {"errors.New", "main.helperTwice", "main.siteHelperTwice"},
	"loop_carried_new":  {"main.siteLoopCarried"},
	"loop_carried_call": {"main.siteLoopCall"},
}

func helperBranch(i int) error {
	if i >= 0 {
		return errors.New("errgen: helper with a branch")
	}
	return nil
}

//go:noinline
func siteHelperBranch(i int) error {
	if err := helperBranch(i); err != nil {
		return err
	}
	return nil
}

func helperMultiReturn(i int) error {
	switch i % 3 {
	case 0:
		return errors.New("errgen: helper return zero")
	case 1:
		return errors.New("errgen: helper return one")
	}
	return errors.New("errgen: helper return two")
}

//go:noinline
func siteHelperMultiReturn(i int) error { return helperMultiReturn(i) }

func helperTwice(i int, msg string) error {
	if i%2 == 0 {
		return errors.New(msg)
	}
	return nil
}

// Two inlined copies of one helper in one function: two creation sites
// with the same frames above them.
//
//go:noinline
func siteHelperTwice(i int) error {
	if err := helperTwice(i, "errgen: helper inlined first"); err != nil {
		return err
	}
	return helperTwice(i+1, "errgen: helper inlined second")
}
