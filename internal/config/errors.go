package config

import (
	"fmt"
	"strings"
)

// ErrorKind says what kind of problem an Error is.
type ErrorKind int

// The kinds of Error.
const (
	ErrFile         ErrorKind = iota + 1 // the file cannot be read
	ErrSyntax                            // the file is not YAML
	ErrLimit                             // over a bound: size, nodes, depth, an alias cycle
	ErrUnknownKey                        // a key the configuration does not have
	ErrDuplicateKey                      // a key given twice in one mapping
	ErrType                              // a value of the wrong shape or type
	ErrInvalid                           // a value that fails validation
)

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem has no single line
	Key  string // the dotted key, such as host.domains.example.com.mode; "" when none
	Kind ErrorKind
	Msg  string
	Err  error // the underlying error, for ErrFile and ErrSyntax
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if loc == "" {
		return e.Msg
	}
	return loc + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errors are all the problems found in a file, in the order found; a
// configuration is checked completely, so that one run lists them all.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// orNil is es as an error, nil when empty.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
