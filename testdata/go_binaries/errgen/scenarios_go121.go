//go:build !go1.22

package main

// Up to Go 1.21 converting one non-empty interface to another calls
// runtime.convI2I with the value's itab; from 1.22 the compiler looks the
// new itab up in a type-assertion cache instead, loading only the old
// itab's type word, and the planner misses that creation (README, known
// gaps), so the scenario runs up to 1.21 only.
var go121Scenarios = []scenario{
	{"batched_as_error", siteBatched, 32},
}

// BatchedErrs extends error (aws-sdk-go's awserr.BatchedErrors has this
// shape). A *batchErr made as one and returned as a plain error is
// re-typed by runtime.convI2I up to Go 1.21: the itab the creation loads is
// not the one returned, and the planner follows the conversion.
type BatchedErrs interface {
	error
	Errs() []error
}

type batchErr struct{ Msg string }

func (b *batchErr) Error() string { return b.Msg }
func (b *batchErr) Errs() []error { return nil }

func newBatched(msg string) BatchedErrs { return &batchErr{Msg: msg} }

//go:noinline
func siteBatched(i int) error { return newBatched("errgen: batched") }
