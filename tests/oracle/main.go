// Command gosym-oracle dumps the function table and sample PC->line answers
// of a Go ELF binary, using only debug/elf and debug/gosym, as TSV:
//
//	F <entry> <end> <function>                one per function, table order
//	P <pc> <file> <line> <function>           entry, middle and end-1 of each
//
// end is the next function's entry (gosym has no sizes), so middle and end-1
// may fall in alignment padding, which gosym reports as file "" and line -1;
// marker symbols such as go:textfipsstart give other lines <= 0. Treat
// line <= 0 as "no line info". For inlined code file/line are the innermost
// inlined position while function stays the physical function.
package main

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "bench" {
		if err := bench(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintf(os.Stderr, "gosym-oracle: %s: %v\n", os.Args[2], err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) >= 4 && os.Args[1] == "fields" {
		if err := fields(os.Args[2], os.Args[3:], os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "gosym-oracle: %s: %v\n", os.Args[2], err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosym-oracle BINARY | gosym-oracle bench BINARY PCFILE | "+
			"gosym-oracle fields BINARY STRUCT...")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "gosym-oracle: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func run(path string) error {
	tab, err := openTable(path)
	if err != nil {
		return err
	}
	return dump(bufio.NewWriterSize(os.Stdout, 1<<16), tab)
}

// openTable reads the pclntab with debug/gosym alone.
func openTable(path string) (*gosym.Table, error) {
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("not a Go binary: not an ELF file")
		}
		return nil, err
	}
	defer f.Close()
	pclntab, err := sectionOrSymbol(f, []string{".gopclntab", ".data.rel.ro.gopclntab"}, "runtime.pclntab", "runtime.epclntab")
	if err != nil {
		return nil, err
	}
	textStart, err := findTextStart(f)
	if err != nil {
		return nil, err
	}
	// .gosymtab is empty since Go 1.3; NewTable only needs the pclntab.
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pclntab, textStart))
	if err != nil {
		return nil, fmt.Errorf("not a Go binary: %v", err)
	}
	if len(tab.Funcs) == 0 {
		return nil, fmt.Errorf("not a Go binary: empty function table")
	}
	return tab, nil
}

func dump(w *bufio.Writer, tab *gosym.Table) error {
	defer w.Flush()
	for _, fn := range tab.Funcs {
		fmt.Fprintf(w, "F\t%#x\t%#x\t%s\n", fn.Entry, fn.End, fn.Name)
	}
	for _, fn := range tab.Funcs {
		for _, pc := range []uint64{fn.Entry, fn.Entry + (fn.End-fn.Entry)/2, fn.End - 1} {
			file, line, _ := tab.PCToLine(pc)
			name := ""
			if pf := tab.PCToFunc(pc); pf != nil {
				name = pf.Name
			}
			fmt.Fprintf(w, "P\t%#x\t%s\t%d\t%s\n", pc, file, line, name)
		}
	}
	return nil
}

// bench times what bench/symbolize times on our side: open + index, then
// PCToLine (function and innermost file:line) for every PC in pcFile, in
// file order and sorted. Prints "open random sorted" in seconds, best of
// several runs.
func bench(path, pcFile string) error {
	data, err := os.ReadFile(pcFile)
	if err != nil {
		return err
	}
	var pcs []uint64
	for _, field := range strings.Fields(string(data)) {
		pc, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return err
		}
		pcs = append(pcs, pc)
	}
	best := func(reps int, fn func() error) (float64, error) {
		min := math.Inf(1)
		for i := 0; i < reps; i++ {
			t0 := time.Now()
			if err := fn(); err != nil {
				return 0, err
			}
			min = math.Min(min, time.Since(t0).Seconds())
		}
		return min, nil
	}
	var tab *gosym.Table
	open, err := best(5, func() (err error) { tab, err = openTable(path); return err })
	if err != nil {
		return err
	}
	found := 0
	resolve := func(list []uint64) func() error {
		return func() error {
			found = 0
			for _, pc := range list {
				if _, _, fn := tab.PCToLine(pc); fn != nil {
					found++
				}
			}
			return nil
		}
	}
	random, _ := best(3, resolve(pcs))
	sorted := append([]uint64(nil), pcs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	sortedTime, _ := best(3, resolve(sorted))
	fmt.Printf("%.9f %.9f %.9f\n", open, random, sortedTime)
	return nil
}
