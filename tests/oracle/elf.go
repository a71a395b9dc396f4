package main

import (
	"debug/elf"
	"errors"
	"fmt"
)

// findTextStart mirrors cmd/internal/objfile: the runtime.text symbol if the
// binary has a symbol table, else the start of .text.
//
// Since Go 1.18 every pclntab offset is relative to runtime.text and gosym
// takes that base only from its caller (it ignores the header copy, which is
// unrelocated in PIE files), so the base must be right. For internally linked
// binaries runtime.text == .text start. The external linker puts C runtime
// code (crt1, etc.) in front of Go's text, so there .text start is wrong and
// only the symbol works: a stripped externally linked binary is refused
// (the header copy cannot serve either: Go 1.26+ writes 0 there).
func findTextStart(f *elf.File) (uint64, error) {
	text := f.Section(".text")
	if text == nil {
		return 0, errors.New("not a Go binary: no .text section")
	}
	syms, err := f.Symbols()
	if err == nil {
		for _, s := range syms {
			if s.Name == "runtime.text" {
				return s.Value, nil
			}
		}
	}
	// Only external linkers emit .init; Go's internal linker never does.
	if f.Section(".init") != nil {
		return 0, errors.New("stripped externally linked binary: runtime.text unknown, .text start would be wrong")
	}
	return text.Addr, nil
}

// sectionOrSymbol returns the first named section present, else the bytes
// between two symbols (as cmd/internal/objfile does). The symbols are needed
// for externally linked PIE before Go 1.26, whose pclntab has no section.
func sectionOrSymbol(f *elf.File, sections []string, start, end string) ([]byte, error) {
	for _, name := range sections {
		if s := f.Section(name); s != nil {
			return s.Data()
		}
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("not a Go binary (or stripped external PIE): no %s section and no symbols", sections[0])
	}
	var lo, hi uint64
	for _, s := range syms {
		switch s.Name {
		case start:
			lo = s.Value
		case end:
			hi = s.Value
		}
	}
	if lo == 0 || hi <= lo {
		return nil, fmt.Errorf("not a Go binary: no %s section or %s symbol", sections[0], start)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && lo >= p.Vaddr && hi <= p.Vaddr+p.Filesz {
			b := make([]byte, hi-lo)
			_, err := p.ReadAt(b, int64(lo-p.Vaddr))
			return b, err
		}
	}
	return nil, fmt.Errorf("%s not inside a loaded segment", start)
}
