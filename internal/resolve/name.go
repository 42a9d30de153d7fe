package resolve

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on domain names (RFC 1035 §2.3.4, §3.1).
const (
	maxLabelLen = 63  // octets in one label
	maxNameWire = 255 // octets of a whole name on the wire, including the root label; 253 characters in plain presentation form without the trailing dot
)

// canonicalName parses a domain name in presentation form (RFC 1035 §5.1:
// "\X" and "\DDD" escapes), with or without the trailing dot, and returns it
// lower-case (ASCII only, RFC 4343), without the trailing dot and with a
// single escaping convention, so that names from callers and names from the
// wire compare equal as strings.
//
// The root is returned as ".". It refuses the empty name, empty labels, labels longer than 63
// octets, names longer than 255 octets on the wire (253 characters), and
// unescaped spaces, control characters or non-ASCII bytes (use A-labels).
func canonicalName(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty name")
	}
	if s == "." {
		return ".", nil // the root zone, e.g. to learn whether a resolver validates
	}
	var (
		labels [][]byte
		cur    []byte
		wire   = 1 // the root label
	)
	endLabel := func() error {
		if len(cur) == 0 {
			return errors.New("empty label")
		}
		if len(cur) > maxLabelLen {
			return fmt.Errorf("label of %d octets (max %d)", len(cur), maxLabelLen)
		}
		wire += 1 + len(cur)
		labels = append(labels, cur)
		cur = nil
		return nil
	}
	for i := 0; i < len(s); {
		b := s[i]
		switch {
		case b == '\\':
			if i+1 >= len(s) {
				return "", errors.New("trailing backslash")
			}
			c := s[i+1]
			if isDigit(c) {
				if i+3 >= len(s) || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
					return "", fmt.Errorf("bad escape at offset %d", i)
				}
				v := int(c-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
				if v > 255 {
					return "", fmt.Errorf("bad escape \\%s", s[i+1:i+4])
				}
				cur = append(cur, byte(v))
				i += 4
				continue
			}
			if c < ' ' || c > '~' {
				return "", fmt.Errorf("invalid escaped character %q", c)
			}
			cur = append(cur, c)
			i += 2
		case b == '.':
			if err := endLabel(); err != nil {
				return "", err
			}
			i++
		case b <= ' ' || b > '~':
			return "", fmt.Errorf("invalid character %q (names must be ASCII; use A-labels)", b)
		default:
			cur = append(cur, b)
			i++
		}
	}
	if len(cur) > 0 {
		if err := endLabel(); err != nil {
			return "", err
		}
	}
	if wire > maxNameWire {
		return "", fmt.Errorf("name of %d octets (max %d)", wire, maxNameWire)
	}
	var out strings.Builder
	for i, l := range labels {
		if i > 0 {
			out.WriteByte('.')
		}
		for _, b := range l {
			writeNameByte(&out, b)
		}
	}
	return out.String(), nil
}

// writeNameByte writes one label octet lower-cased and escaped the way
// miekg/dns prints names.
func writeNameByte(w *strings.Builder, b byte) {
	switch {
	case b >= 'A' && b <= 'Z':
		w.WriteByte(b + ('a' - 'A'))
	case b < '!' || b > '~':
		fmt.Fprintf(w, "\\%03d", b)
	case strings.IndexByte(`.'@;()"\`, b) >= 0:
		w.WriteByte('\\')
		w.WriteByte(b)
	default:
		w.WriteByte(b)
	}
}

// ownerName returns the canonical form of a name from a reply (which is
// always valid presentation form), or a best-effort lower-casing for
// anything canonicalName refuses, such as the root.
func ownerName(s string) string {
	if s == "." || s == "" {
		return s
	}
	if c, err := canonicalName(s); err == nil {
		return c
	}
	return asciiLower(strings.TrimSuffix(s, "."))
}

// displayName is the Answer.Name recorded for a name canonicalName refused.
func displayName(s string) string {
	if s != "." {
		s = strings.TrimSuffix(s, ".")
	}
	return asciiLower(s)
}

func asciiLower(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// unescapeText decodes a character-string as miekg/dns presents it ("\X"
// for '"' and '\', "\DDD" for unprintable octets) back to its raw octets.
func unescapeText(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v <= 255 {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, s[i+1])
		i++
	}
	return string(out)
}
