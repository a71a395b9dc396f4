package main

import (
	"fmt"
	"reflect"
)

// CodeError is returned by value, so boxing it into error copies the struct.
type CodeError struct {
	Code int
	Msg  string
}

func (e CodeError) Error() string { return fmt.Sprintf("code %d: %s", e.Code, e.Msg) }

// QueryError is returned by pointer and wraps a single cause.
type QueryError struct {
	Query string
	Err   error
}

func (e *QueryError) Error() string { return "query " + e.Query + " failed: " + e.Err.Error() }
func (e *QueryError) Unwrap() error { return e.Err }

// MultiError wraps several causes (Go 1.20 multi-unwrap shape).
type MultiError struct {
	Op   string
	Errs []error
}

func (e *MultiError) Error() string {
	return fmt.Sprintf("%s: %d errors, first: %v", e.Op, len(e.Errs), e.Errs[0])
}
func (e *MultiError) Unwrap() []error { return e.Errs }

// PanicError travels through panic/recover.
type PanicError struct {
	Reason string
}

func (e *PanicError) Error() string { return "panic: " + e.Reason }

// ownErrorTypes are the dynamic types errgen boxes into error.
var ownErrorTypes = []error{CodeError{}, &QueryError{}, &MultiError{}, &PanicError{}, ZeroError{}}

type fieldInfo struct {
	Name   string  `json:"name"`
	Offset uintptr `json:"offset"`
}

type typeInfo struct {
	Name             string      `json:"name"`
	Kind             string      `json:"kind"`
	Size             uintptr     `json:"size"`
	ElemSize         uintptr     `json:"elem_size,omitempty"`
	StringFields     []fieldInfo `json:"string_fields"`
	ErrorFields      []fieldInfo `json:"error_fields"`
	ErrorSliceFields []fieldInfo `json:"error_slice_fields"`
}

var (
	errorType      = reflect.TypeOf((*error)(nil)).Elem()
	errorSliceType = reflect.TypeOf([]error(nil))
)

// describeType reports layout via reflect so offsets are exact for the
// toolchain that built this binary.
func describeType(e error) typeInfo {
	t := reflect.TypeOf(e)
	ti := typeInfo{Name: fmt.Sprintf("%T", e), Kind: t.Kind().String(), Size: t.Size(),
		StringFields: []fieldInfo{}, ErrorFields: []fieldInfo{}, ErrorSliceFields: []fieldInfo{}}
	st := t
	if t.Kind() == reflect.Ptr {
		st = t.Elem()
		ti.ElemSize = st.Size()
	}
	if st.Kind() != reflect.Struct {
		return ti
	}
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		fi := fieldInfo{Name: f.Name, Offset: f.Offset}
		switch {
		case f.Type.Kind() == reflect.String:
			ti.StringFields = append(ti.StringFields, fi)
		case f.Type == errorType:
			ti.ErrorFields = append(ti.ErrorFields, fi)
		case f.Type == errorSliceType:
			ti.ErrorSliceFields = append(ti.ErrorSliceFields, fi)
		}
	}
	return ti
}
