//go:build !go1.27

package main

// encoding/json/v2 is a standard package from Go 1.27.
var go127Scenarios []scenario
