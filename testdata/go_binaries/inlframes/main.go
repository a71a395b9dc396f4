// Command inlframes captures stacks through 2-4 levels of inlined calls and
// prints what the Go runtime itself says about every PC, as one JSON object.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
)

type frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Entry    string `json:"entry"` // file vaddr of the physical (outermost) function
}

type stack struct {
	PCs    []string `json:"pcs"`
	Frames []frame  `json:"frames"`
}

var (
	bias   uintptr
	stacks = []stack{}
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "inlframes: "+format+"\n", args...)
	os.Exit(1)
}

// record symbolizes the n PCs captured in pcbuf and keeps only main.* frames.
// Callers yields one PC per logical (also inlined) frame, so the runtime
// must give back exactly one frame per PC; anything else is a bug here.
func record(n int) {
	pcs := pcbuf[:n]
	var all []frame
	it := runtime.CallersFrames(pcs)
	for {
		f, more := it.Next()
		all = append(all, frame{f.Function, f.File, f.Line, fmt.Sprintf("%#x", f.Entry-bias)})
		if !more {
			break
		}
	}
	if len(all) != len(pcs) {
		fail("stack %d: %d pcs but %d frames", len(stacks), len(pcs), len(all))
	}
	s := stack{PCs: []string{}, Frames: []frame{}}
	for i, f := range all {
		if strings.HasPrefix(f.Function, "runtime.") {
			continue
		}
		s.PCs = append(s.PCs, fmt.Sprintf("%#x", pcs[i]-bias))
		s.Frames = append(s.Frames, f)
	}
	stacks = append(stacks, s)
}

func main() {
	var err error
	if bias, err = loadBias(); err != nil {
		fail("load bias: %v", err)
	}
	pathA()
	pathB()
	pathC()
	pathD()
	pathE()
	pathF()
	record(g1()) // g1, b1, capture inlined into main

	out := map[string]interface{}{
		"go_version": runtime.Version(),
		"bias":       fmt.Sprintf("%#x", bias),
		"stacks":     stacks,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fail("%v", err)
	}
}
