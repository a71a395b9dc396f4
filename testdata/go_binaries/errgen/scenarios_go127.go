//go:build go1.27

package main

import (
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
)

// json v2 (a standard package from Go 1.27) wraps what an UnmarshalJSONFrom
// method returns in a *json.SemanticError, made in
// newSemanticErrorWithPosition, whose references all meet at one return
// (`return serr`): the planner probes that return with a check of the itab.
// One SemanticError per call; the site returns the method's error wrapped.
var go127Scenarios = []scenario{
	{"json_v2_method", siteJSONv2, 29},
}

var errBadValue = errors.New("errgen: bad value")

type badValue struct{}

func (*badValue) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	if err := d.SkipValue(); err != nil {
		return err
	}
	return errBadValue
}

//go:noinline
func siteJSONv2(i int) error {
	var v struct{ A badValue }
	err := jsonv2.Unmarshal([]byte(`{"A":1}`), &v)
	return fmt.Errorf("json v2 %d: %w", i%2, errors.Unwrap(err))
}
