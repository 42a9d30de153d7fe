package mtasts

import "strings"

// MatchMX reports whether an mx pattern matches an MX host name
// (RFC 8461 §4.1): the comparison is ASCII case-insensitive and ignores one
// trailing dot; a "*." pattern matches exactly one extra left-most label
// and never the parent itself ("*.example.com" matches "mail.example.com",
// not "example.com" or "foo.bar.example.com").
func MatchMX(pattern, host string) bool {
	p := strings.TrimSuffix(lower(pattern), ".")
	h := strings.TrimSuffix(lower(host), ".")
	if p == "" || h == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		label, parent, found := strings.Cut(h, ".")
		return found && label != "" && parent == rest
	}
	return p == h
}

// Match returns the first of the policy's mx patterns that matches host.
func (p *Policy) Match(host string) (pattern string, ok bool) {
	for _, pat := range p.MX {
		if MatchMX(pat, host) {
			return pat, true
		}
	}
	return "", false
}
