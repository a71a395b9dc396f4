// Package parse reads host:port pairs. It creates every error itself (no
// strconv), so its tests know exactly how many errors each call makes.
package parse

import (
	"errors"
	"fmt"
	"strings"
)

var ErrNoPort = errors.New("parse: missing port")

// PortError says which port text is not a port.
type PortError struct{ Text string }

func (e *PortError) Error() string { return "parse: bad port " + e.Text }

// HostPort splits "host:port". Each failure creates exactly one error: a
// *PortError, or a wrapper of the ErrNoPort sentinel.
//
//go:noinline
func HostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("parse %q: %w", s, ErrNoPort)
	}
	text, port := s[i+1:], 0
	if text == "" || len(text) > 5 {
		return "", 0, &PortError{Text: text}
	}
	for _, c := range text {
		if c < '0' || c > '9' {
			return "", 0, &PortError{Text: text}
		}
		port = port*10 + int(c-'0')
	}
	if port > 65535 {
		return "", 0, &PortError{Text: text}
	}
	return s[:i], port, nil
}
