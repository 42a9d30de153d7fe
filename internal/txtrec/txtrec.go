// Package txtrec tokenises the tag=value TXT records shared by MTA-STS
// (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3):
//
//	record = version 1*(field-delim field) [field-delim]
//	field-delim = *WSP ";" *WSP
//
// It reports every deviation it sees with its byte offset, so callers can
// explain a broken record instead of just rejecting it. Field names and
// values are returned raw; the protocol packages check them.
package txtrec

import (
	"fmt"
	"strings"
)

// Code names a tokenising problem.
type Code string

// Problems the tokeniser reports. Every one of them makes the record invalid,
// except SpaceBeforeSemicolon: the grammar allows it, but a record written so
// does not survive the sender's prefix filter when several TXT records come
// back (see Select).
const (
	NonASCII             Code = "non-ascii"              // byte outside printable US-ASCII, SP, HTAB
	Quoted               Code = "quoted"                 // literal quote characters around the value
	Version              Code = "version"                // does not begin with the exact version tag
	SpaceBeforeSemicolon Code = "space-before-semicolon" // "v=STSv1 ;": grammatical, fails the prefix filter
	MissingSemicolon     Code = "missing-semicolon"      // "v=STSv1 id=1"
	EmptyField           Code = "empty-field"            // ";;"
	NoEquals             Code = "no-equals"              // a field without '='
	SpaceAroundEquals    Code = "space-around-equals"    // "id = 1"
	TrailingSpace        Code = "trailing-space"         // whitespace after the last value, no ';'
	NoFields             Code = "no-fields"              // the version alone
)

// Class groups the codes the way the record parsers report them: the
// codes with a fix of their own keep their name, the rest are "syntax".
func (c Code) Class() string {
	switch c {
	case NonASCII, Quoted, Version, SpaceBeforeSemicolon, SpaceAroundEquals, TrailingSpace:
		return string(c)
	}
	return "syntax"
}

// Fatal reports whether the problem makes the record invalid by the
// grammar (RFC 8461 §3.1, RFC 8460 §3).
func (c Code) Fatal() bool { return c != SpaceBeforeSemicolon }

// Select returns the TXT records (strings of each joined) that a sender
// parses, and whether the prefix filter applied (RFC 8461 §3.1, RFC 8460 §3).
// A single record is parsed as it is: "v=STSv1 ; id=1" matches the grammar,
// whose delimiter is *WSP ";" *WSP. Only when several records come back are
// those that do not begin with prefix (e.g. "v=STSv1;") discarded. The
// caller must find exactly one record in kept, and it must parse.
func Select(txts []string, prefix string) (kept []string, filtered bool) {
	if len(txts) == 1 {
		return txts, false
	}
	for _, t := range txts {
		if strings.HasPrefix(t, prefix) {
			kept = append(kept, t)
		}
	}
	return kept, true
}

// Problem is one tokenising problem.
type Problem struct {
	Code   Code
	Offset int
	Text   string
	Detail string
}

// Field is one name=value field after the version.
type Field struct {
	Name   string
	Value  string // may contain WSP for list values; the caller validates it
	Raw    string // the field text as published
	Offset int    // byte offset of Raw in the record
}

// Record is a tokenised record.
type Record struct {
	Fields   []Field
	Problems []Problem
}

// Parse tokenises txt, which must begin with versionTag (e.g. "v=STSv1").
// It always returns the fields it could recover.
func Parse(txt, versionTag string) Record {
	var r Record
	add := func(c Code, off int, text, format string, args ...any) {
		r.Problems = append(r.Problems, Problem{Code: c, Offset: off, Text: text, Detail: fmt.Sprintf(format, args...)})
	}
	s := txt
	base := 0
	if off, what := firstBad(s); off >= 0 {
		add(NonASCII, off, s, "%s at offset %d; the record must be plain US-ASCII", what, off)
	}
	if t := strings.Trim(s, `"'`+"\u201c\u201d"); t != s && strings.Contains(strings.ToLower(s), strings.ToLower(versionTag)) {
		add(Quoted, 0, s, "the value is wrapped in quote characters: %s", show(s))
		base = strings.Index(s, t)
		s = t
	}
	if !strings.HasPrefix(s, versionTag) {
		lead := strings.TrimLeft(s, " \t")
		switch {
		case lead != s && strings.HasPrefix(lead, versionTag):
			add(Version, base, s, "the record starts with whitespace before %q", versionTag)
		case strings.HasPrefix(strings.ToLower(lead), strings.ToLower(versionTag)):
			add(Version, base, s, "the record starts with %q; the version tag is case-sensitive and must be exactly %q", lead[:len(versionTag)], versionTag)
		default:
			add(Version, base, s, "the record does not begin with %q (it begins with %s)", versionTag, show(prefix(s, 16)))
			return r
		}
		base += len(s) - len(lead)
		s = lead
	}
	s = s[len(versionTag):]
	base += len(versionTag)
	if s != "" && s[0] != ';' && !isWSP(s[0]) {
		// "v=STSv12" or "v=TLSRPTv1extra": a different version.
		add(Version, base-len(versionTag), versionTag+s, "the version tag is %s, not %q", show(versionTag+firstToken(s)), versionTag)
		return r
	}
	first := true
	for {
		// Delimiter: *WSP ";" *WSP.
		i := 0
		for i < len(s) && isWSP(s[i]) {
			i++
		}
		if i == len(s) {
			if i > 0 {
				add(TrailingSpace, base, s, "the record ends with whitespace after the last value; remove it or end the record with ';'")
			} else if first {
				add(NoFields, base, "", "the record has no fields after %q", versionTag)
			}
			return r
		}
		if s[i] != ';' {
			if first {
				add(MissingSemicolon, base+i, s[i:], "%q must be followed by ';' before the next field (found %s)", versionTag, show(prefix(s, 20)))
			} else {
				add(MissingSemicolon, base+i, s[i:], "a ';' is missing before %s", show(prefix(s[i:], 20)))
			}
			// Recover: treat the whitespace as the delimiter.
			s, base = s[i:], base+i
		} else {
			if i > 0 && first {
				add(SpaceBeforeSemicolon, base, s[:i+1], "there is whitespace between %q and ';'", versionTag)
			}
			i++
			for i < len(s) && isWSP(s[i]) {
				i++
			}
			s, base = s[i:], base+i
			if s == "" {
				if first {
					add(NoFields, base, "", "the record has no fields after %q", versionTag)
				}
				return r
			}
		}
		first = false
		// Field: everything up to the next ';', less trailing WSP (which
		// belongs to the next delimiter or is trailing space).
		end := strings.IndexByte(s, ';')
		if end < 0 {
			end = len(s)
		}
		raw := strings.TrimRight(s[:end], " \t")
		if raw == "" {
			add(EmptyField, base, s[:end], "empty field (two ';' in a row)")
			s, base = s[len(raw):], base+len(raw)
			continue
		}
		r.addField(raw, base)
		s, base = s[len(raw):], base+len(raw)
	}
}

func (r *Record) addField(raw string, off int) {
	add := func(c Code, format string, args ...any) {
		r.Problems = append(r.Problems, Problem{Code: c, Offset: off, Text: raw, Detail: fmt.Sprintf(format, args...)})
	}
	eq := strings.IndexByte(raw, '=')
	if eq < 0 {
		if j := strings.IndexAny(raw, " \t"); j >= 0 {
			add(MissingSemicolon, "a ';' is missing inside %s", show(raw))
			return
		}
		add(NoEquals, "the field %s has no '='", show(raw))
		return
	}
	name, value := raw[:eq], raw[eq+1:]
	tname, tvalue := strings.TrimRight(name, " \t"), strings.TrimLeft(value, " \t")
	if tname != name || tvalue != value {
		if !strings.ContainsAny(tname, " \t") {
			add(SpaceAroundEquals, "whitespace around '=' in %s; write %s", show(raw), show(tname+"="+tvalue))
			r.Fields = append(r.Fields, Field{Name: tname, Value: tvalue, Raw: raw, Offset: off})
			return
		}
	}
	if strings.ContainsAny(name, " \t") {
		add(MissingSemicolon, "a ';' is missing inside %s", show(raw))
		return
	}
	r.Fields = append(r.Fields, Field{Name: name, Value: value, Raw: raw, Offset: off})
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func firstToken(s string) string {
	if i := strings.IndexAny(s, "; \t"); i >= 0 {
		return s[:i]
	}
	return s
}

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func show(s string) string { return fmt.Sprintf("%q", s) }

// firstBad returns the offset of the first byte that is not printable
// US-ASCII, SP or HTAB, with a description, or -1.
func firstBad(s string) (int, string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x20 && c <= 0x7e, c == '\t':
		case c >= 0x80:
			return i, DescribeNonASCII(s[i:])
		default:
			return i, fmt.Sprintf("control character 0x%02X", c)
		}
	}
	return -1, ""
}

// DescribeNonASCII names the character at the start of s in plain words.
func DescribeNonASCII(s string) string {
	r := []rune(s)
	if len(r) == 0 {
		return "a non-ASCII byte"
	}
	switch r[0] {
	case '\u00a0':
		return "a non-breaking space (U+00A0)"
	case '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff':
		return fmt.Sprintf("an invisible character (U+%04X)", r[0])
	case '\u201c', '\u201d', '\u2018', '\u2019':
		return fmt.Sprintf("a typographic quote %q", r[0])
	case '\ufffd':
		return "a byte that is not UTF-8"
	}
	return fmt.Sprintf("the non-ASCII character %q", r[0])
}

// ValidExtName reports whether s matches the extension-name production of
// RFC 8461 §3.1/§3.2 and RFC 8460 §3:
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."). (RFC 8461 §3.2
// spells it "sta-policy-alphanum", a typo read as letters and digits; AMB-4.)
func ValidExtName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// ValidExtValue reports whether s matches 1*(%x21-3A / %x3C / %x3E-7E):
// printable ASCII except '=' and ';' (RFC 8461 §3.1, RFC 8460 §3).
func ValidExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
