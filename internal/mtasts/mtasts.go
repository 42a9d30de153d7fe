// Package mtasts implements the pure parts of MTA-STS (RFC 8461): the
// _mta-sts TXT record and the policy file grammars, MX pattern matching, the
// canonical policy writer and policy ids. It does no I/O.
//
// The parsers are strict about the RFC grammar and diagnostic: besides the
// effective result they return every Problem they saw, with the line or
// offset and the offending text, so a validator can say exactly what is
// wrong. A Problem marked Fatal makes the record or policy invalid for an
// RFC 8461 sender.
package mtasts

import (
	"fmt"
	"strings"
)

// Code names a kind of problem. Codes are stable; the scan maps them to
// finding IDs.
type Code string

// Problem is one deviation from RFC 8461 found by a parser.
type Problem struct {
	Code   Code   `json:"code"`
	Fatal  bool   `json:"fatal"`            // makes the record or policy invalid (RFC 8461 §3.1, §3.2)
	Line   int    `json:"line,omitempty"`   // 1-based policy line; 0 for records
	Offset int    `json:"offset,omitempty"` // byte offset in a record, where it helps
	Text   string `json:"text,omitempty"`   // the offending field, value or line
	Detail string `json:"detail"`           // plain words, naming the observed value
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Detail)
	}
	return p.Detail
}

// Extension is an extension field of a record or policy.
type Extension struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// quote shows a value in messages with invisible characters escaped.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// lower is strings.ToLower, named for the ASCII names it is used on.
func lower(s string) string { return strings.ToLower(s) }
