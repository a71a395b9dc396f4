package main

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"io"
	"sort"
)

// fields prints "struct.field offset" for every field of the named structs
// (e.g. runtime.g, runtime.m), read from the binary's DWARF: the ground
// truth for goabi's hand-kept layouts. Embedded struct fields are expanded
// as "struct.outer.inner" (runtime.g's sched.sp is "runtime.g.sched.sp").
func fields(path string, structs []string, w io.Writer) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range structs {
		want[s] = true
	}
	found := map[string]bool{}
	var lines []string
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !want[name] || found[name] {
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			return err
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			continue
		}
		found[name] = true
		lines = appendFields(lines, name, 0, st)
	}
	for _, s := range structs {
		if !found[s] {
			return fmt.Errorf("no struct %s in DWARF", s)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return nil
}

func appendFields(lines []string, prefix string, base int64, st *dwarf.StructType) []string {
	for _, f := range st.Field {
		name := prefix + "." + f.Name
		lines = append(lines, fmt.Sprintf("%s %d", name, base+f.ByteOffset))
		t := f.Type
		for {
			td, ok := t.(*dwarf.TypedefType)
			if !ok {
				break
			}
			t = td.Type
		}
		if inner, ok := t.(*dwarf.StructType); ok && len(inner.Field) > 0 {
			lines = appendFields(lines, name, base+f.ByteOffset, inner)
		}
	}
	return lines
}
