//go:build go1.20

package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Multi-%w and errors.Join exist only since Go 1.20.
var go120Scenarios = []scenario{
	{"errorf_two_w", siteTwoW, 13},
	{"errors_join", siteJoin, 14},
}

//go:noinline
func siteTwoW(i int) error { return fmt.Errorf("two causes %d: %w; %w", i, errNoRows, io.EOF) }

//go:noinline
func siteJoin(i int) error { return errors.Join(errors.New("first "+strconv.Itoa(i)), errNoRows) }
