//go:build go1.22

package main

// See scenarios_go121.go.
var go121Scenarios []scenario
