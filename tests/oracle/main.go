// Command gosym-oracle dumps the function table and sample PC->line answers
// of a Go ELF binary, using only debug/elf and debug/gosym, as TSV:
//
//	F <entry> <end> <function>                one per function, table order
//	P <pc> <file> <line> <function>           entry, middle and end-1 of each
//
// end is the next function's entry (gosym has no sizes), so end-1 may be
// alignment padding, which gosym reports as file "" line -1. For inlined code
// file/line are the innermost inlined position while function stays the
// physical function.
package main

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosym-oracle BINARY")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "gosym-oracle: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func run(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return fmt.Errorf("not a Go binary: not an ELF file")
		}
		return err
	}
	defer f.Close()
	pclntab, err := sectionOrSymbol(f, []string{".gopclntab", ".data.rel.ro.gopclntab"}, "runtime.pclntab", "runtime.epclntab")
	if err != nil {
		return err
	}
	textStart, err := findTextStart(f)
	if err != nil {
		return err
	}
	// .gosymtab is empty since Go 1.3; NewTable only needs the pclntab.
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pclntab, textStart))
	if err != nil {
		return fmt.Errorf("not a Go binary: %v", err)
	}
	if len(tab.Funcs) == 0 {
		return fmt.Errorf("not a Go binary: empty function table")
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
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
