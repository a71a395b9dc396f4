//go:build !go1.20

package main

// Go 1.19 has neither multi-%w nor errors.Join: those scenarios are omitted.
var go120Scenarios []scenario
