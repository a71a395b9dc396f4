package main

import (
	"reflect"
	"strings"
)

// profileMessage is the message a profiler that cannot run Error() methods
// shows: Error() for standard library types, and for errgen's own types
// (package main) their non-empty string fields in order, then the messages
// of the errors they wrap (error fields first, then []error elements, one
// per line), all joined by ": ". Errors without any of those show their
// type name.
func profileMessage(err error) string {
	t := reflect.TypeOf(err)
	v := reflect.ValueOf(err)
	if t.Kind() == reflect.Ptr {
		t, v = t.Elem(), v.Elem()
	}
	if t.PkgPath() != "main" || t.Kind() != reflect.Struct {
		return err.Error()
	}
	var parts, wrapped []string
	for i := 0; i < t.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.String && f.Len() > 0 {
			parts = append(parts, f.String())
		}
	}
	for i := 0; i < t.NumField(); i++ {
		if f := v.Field(i); t.Field(i).Type == errorType && !f.IsNil() {
			wrapped = append(wrapped, profileMessage(f.Interface().(error)))
		}
	}
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Slice && t.Field(i).Type.Elem() == errorType {
			for k := 0; k < f.Len(); k++ {
				if e, ok := f.Index(k).Interface().(error); ok && e != nil {
					wrapped = append(wrapped, profileMessage(e))
				}
			}
		}
	}
	if len(wrapped) > 0 {
		parts = append(parts, strings.Join(wrapped, "\n"))
	}
	if len(parts) == 0 {
		return reflect.TypeOf(err).String()
	}
	return strings.Join(parts, ": ")
}
