package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// -churn: a process a test kills while it creates errors (the agent's
// churn test). Its site is its own, so the counts of processes that exit
// cleanly (-storm) stay exact next to it.
var churn = flag.Bool("churn", false, "create errors at churnSite until killed; say 'churning <pid>' after the first")

var errChurnBase = errors.New("peer gone")

// Kept where the compiler cannot drop the loop's work.
var churnSink error

//go:noinline
func churnSite(i int) error {
	if i < 0 {
		return nil
	}
	return fmt.Errorf("churn: %w", errChurnBase)
}

// runChurn never returns.
func runChurn() {
	for i := 0; ; i++ {
		churnSink = churnSite(i)
		if i == 0 {
			fmt.Printf("churning %d\n", os.Getpid())
		}
	}
}
