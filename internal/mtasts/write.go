package mtasts

import (
	"strconv"
	"strings"
)

// String writes the policy in canonical form (STS-POL-22): "version" first,
// then "mode", one "mx" line per pattern, "max_age", then extensions; CRLF
// line endings (RFC 8461 §3.2 prose) with exactly one final CRLF; no BOM and
// no trailing whitespace. A policy with an empty Version is written as STSv1.
func (p *Policy) String() string {
	var b strings.Builder
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	v := p.Version
	if v == "" {
		v = "STSv1"
	}
	line("version", v)
	line("mode", string(p.Mode))
	for _, mx := range p.MX {
		line("mx", mx)
	}
	line("max_age", strconv.FormatInt(p.MaxAge, 10))
	for _, e := range p.Extensions {
		line(e.Name, e.Value)
	}
	return b.String()
}

// Equal reports whether two policies have the same content: the same
// version, mode, max_age, extensions, and mx patterns in the same order
// (patterns compared case-insensitively).
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.Version != q.Version || p.Mode != q.Mode || p.MaxAge != q.MaxAge || len(p.MX) != len(q.MX) || len(p.Extensions) != len(q.Extensions) {
		return false
	}
	for i := range p.MX {
		if !strings.EqualFold(p.MX[i], q.MX[i]) {
			return false
		}
	}
	for i := range p.Extensions {
		if p.Extensions[i] != q.Extensions[i] {
			return false
		}
	}
	return true
}
