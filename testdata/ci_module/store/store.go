// Package store is a tiny key-value store whose lookups fail in known ways.
package store

import "fmt"

// NotFoundError says a key is missing.
type NotFoundError struct{ Key string }

func (e *NotFoundError) Error() string { return "store: no key " + e.Key }

// ReadOnlyError says the store refuses writes.
type ReadOnlyError struct{ Op string }

func (e *ReadOnlyError) Error() string { return "store: read-only: " + e.Op }

type Store struct {
	data     map[string]string
	readOnly bool
}

func New(readOnly bool) *Store { return &Store{data: map[string]string{"a": "1"}, readOnly: readOnly} }

// Get returns the value of key, or a *NotFoundError.
//
//go:noinline
func (s *Store) Get(key string) (string, error) {
	v, ok := s.data[key]
	if !ok {
		return "", &NotFoundError{Key: key}
	}
	return v, nil
}

// Put stores a value, or fails with a *ReadOnlyError wrapped with the key.
//
//go:noinline
func (s *Store) Put(key, value string) error {
	if s.readOnly {
		return fmt.Errorf("put %s: %w", key, &ReadOnlyError{Op: "put"})
	}
	s.data[key] = value
	return nil
}
