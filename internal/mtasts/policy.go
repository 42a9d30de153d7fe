package mtasts

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/txtrec"
)

// Policy problem codes (RFC 8461 §3.2).
const (
	PolicyEmpty            Code = "policy-empty"
	PolicyBOM              Code = "policy-bom"
	PolicyBareCR           Code = "policy-bare-cr"
	PolicyBlankLine        Code = "policy-blank-line"
	PolicyLeadingSpace     Code = "policy-leading-space"
	PolicySpaceBeforeColon Code = "policy-space-before-colon"
	PolicyNotKeyValue      Code = "policy-not-key-value"
	PolicyControlChar      Code = "policy-control-char"
	PolicyInvalidUTF8      Code = "policy-invalid-utf8"
	PolicyVersion          Code = "policy-version"
	PolicyMode             Code = "policy-mode"
	PolicyMaxAge           Code = "policy-max-age"
	PolicyMXInvalid        Code = "policy-mx-invalid"
	PolicyMXMissing        Code = "policy-mx-missing"
	// Not fatal by themselves.
	PolicyKeyCase           Code = "policy-key-case"          // "Mode:" and no "mode:": the field is missing (reported fatally under its own code)
	PolicyKeyCaseShadowed   Code = "policy-key-case-shadowed" // "Mode:" beside a correct "mode:"
	PolicyDuplicateConflict Code = "policy-duplicate-conflict"
	PolicyDuplicateSame     Code = "policy-duplicate-same"
	PolicyMXDuplicate       Code = "policy-mx-duplicate"
	PolicyTrailingSpace     Code = "policy-trailing-space"
	PolicyLineEndings       Code = "policy-line-endings"
	PolicyUnknownKey        Code = "policy-unknown-key"
	PolicyExtensionColon    Code = "policy-extension-colon"
	PolicyFieldOrder        Code = "policy-field-order"
)

// Mode is the policy mode (RFC 8461 §5).
type Mode string

// Modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// The max_age we recommend and use by default: one day while testing, so
// that a mistake expires quickly, and at least one week in enforce, so that
// a blocked refresh does not soon remove the protection (MISC-17).
const (
	TestingMaxAge = 86400
	EnforceMaxAge = 604800
)

// RecommendedMaxAge is the shortest max_age we recommend for a mode, and
// the default where none is given.
func RecommendedMaxAge(m Mode) int64 {
	if m == ModeEnforce {
		return EnforceMaxAge
	}
	return TestingMaxAge
}

// PolicyPath is the well-known path of the policy file (RFC 8461 §3.2).
const PolicyPath = "/.well-known/mta-sts.txt"

// PolicyURL is where senders fetch the policy of domain (RFC 8461 §3.2).
func PolicyURL(domain string) string { return "https://mta-sts." + domain + PolicyPath }

// MaxMaxAge is the largest max_age, one year in seconds (RFC 8461 §3.2).
const MaxMaxAge = 31557600

// MaxPolicySize is the body size senders are expected to accept, 64 KiB
// (RFC 8461 §3.3).
const MaxPolicySize = 65536

// Policy is an MTA-STS policy.
type Policy struct {
	Version    string      `json:"version"`
	Mode       Mode        `json:"mode"`
	MaxAge     int64       `json:"max_age"`
	MX         []string    `json:"mx"`
	Extensions []Extension `json:"extensions,omitempty"`
}

// Line endings found in a policy.
const (
	EndingsNone  = "none" // a single line without terminator
	EndingsLF    = "lf"
	EndingsCRLF  = "crlf"
	EndingsMixed = "mixed"
)

// ParsedPolicy is the result of ParsePolicy.
type ParsedPolicy struct {
	// Policy is what an RFC 8461 sender uses: nil when any fatal problem
	// was found (RFC 8461 §3.2: the body must match the grammar as a whole).
	Policy *Policy `json:"policy"`
	// Draft holds the first valid value of each field and every valid mx
	// pattern, even when the policy as a whole is invalid. Fields that were
	// missing or invalid are zero. Fixes start from it.
	Draft    Policy    `json:"draft"`
	Problems []Problem `json:"problems,omitempty"`
	Endings  string    `json:"line_endings"`
	Lines    int       `json:"lines"`
}

// Fatal reports whether any problem makes the policy invalid.
func (p *ParsedPolicy) Fatal() bool { return p.Policy == nil }

// ParsePolicy parses a policy body strictly per the RFC 8461 §3.2 grammar,
// reporting every problem with its line number.
func ParsePolicy(body []byte) *ParsedPolicy {
	pp := &ParsedPolicy{Draft: Policy{}}
	add := func(c Code, fatal bool, line int, text, format string, args ...any) {
		pp.Problems = append(pp.Problems, Problem{Code: c, Fatal: fatal, Line: line, Text: text, Detail: fmt.Sprintf(format, args...)})
	}
	if len(body) == 0 {
		add(PolicyEmpty, true, 0, "", "the policy file is empty")
		pp.Endings = EndingsNone
		return pp
	}
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		add(PolicyBOM, true, 1, "", "the file starts with a UTF-8 byte-order mark (EF BB BF), so the first key is not %q", firstKey(body[3:]))
		body = body[3:]
	}

	p := parser{pp: pp, add: add, seen: map[string]string{}, mxSeen: map[string]bool{}}
	var lf, crlf int
	n := 0
	for len(body) > 0 {
		n++
		var seg []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			seg, body = body[:i], body[i+1:]
			if bytes.HasSuffix(seg, []byte("\r")) {
				seg = seg[:len(seg)-1]
				crlf++
			} else {
				lf++
			}
		} else {
			seg, body = body, nil
		}
		if !utf8.Valid(seg) {
			add(PolicyInvalidUTF8, true, n, string(seg), "the line is not valid UTF-8 (%s)", txtrec.DescribeNonASCII(strings.ToValidUTF8(string(seg), "\ufffd")[firstInvalid(seg):]))
			continue
		}
		if bytes.IndexByte(seg, '\r') >= 0 {
			add(PolicyBareCR, true, n, string(seg), "the line contains a bare CR (0x0D) that is not followed by LF; CR alone does not end a line")
			for _, part := range strings.Split(string(seg), "\r") {
				p.line(n, part)
			}
			continue
		}
		p.line(n, string(seg))
	}
	pp.Lines = n
	switch {
	case lf > 0 && crlf > 0:
		pp.Endings = EndingsMixed
		add(PolicyLineEndings, false, 0, "", "the file mixes LF (%d) and CRLF (%d) line endings; both are valid (erratum 6253)", lf, crlf)
	case crlf > 0:
		pp.Endings = EndingsCRLF
	case lf > 0:
		pp.Endings = EndingsLF
	default:
		pp.Endings = EndingsNone
	}
	p.finish()
	if !hasFatal(pp.Problems) {
		pol := pp.Draft
		pol.MX = append([]string(nil), pp.Draft.MX...)
		pp.Policy = &pol
	}
	return pp
}

type parser struct {
	pp       *ParsedPolicy
	add      func(c Code, fatal bool, line int, text, format string, args ...any)
	first    string            // key of the first field
	seen     map[string]string // first raw value of version, mode, max_age, extensions
	typos    map[string]string // correct key -> misspelled key found
	typoLine map[string]int
	mxSeen   map[string]bool
	mxLines  int
}

func (p *parser) line(n int, text string) {
	if strings.Trim(text, " \t") == "" {
		p.add(PolicyBlankLine, true, n, text, "the line is empty; the policy may not contain empty lines or more than one line break at the end")
		return
	}
	if t := strings.TrimLeft(text, " \t"); t != text {
		p.add(PolicyLeadingSpace, true, n, text, "the line starts with whitespace: %s", quote(text))
		text = t
	}
	colon := strings.IndexByte(text, ':')
	if colon < 0 {
		p.add(PolicyNotKeyValue, true, n, text, "%s is not a \"key: value\" line%s", quote(text), notKVHint(text))
		return
	}
	rawKey := text[:colon]
	key := strings.TrimRight(rawKey, " \t")
	if strings.HasPrefix(key, "#") || strings.HasPrefix(key, "//") || strings.HasPrefix(key, "-") {
		p.add(PolicyNotKeyValue, true, n, text, "%s is not a \"key: value\" line%s", quote(text), notKVHint(text))
		return
	}
	if key != rawKey {
		p.add(PolicySpaceBeforeColon, true, n, text, "whitespace between the key %q and ':'", key)
	}
	if !txtrec.ValidExtName(key) {
		p.add(PolicyNotKeyValue, true, n, text, "%q is not a valid key (letters, digits, '_', '-', '.'; at most 32; starting with a letter or digit)", key)
		return
	}
	if p.first == "" {
		p.first = key
	}
	value := strings.TrimLeft(text[colon+1:], " \t")
	if v := strings.TrimRight(value, " \t"); v != value {
		p.add(PolicyTrailingSpace, false, n, text, "the line ends with whitespace after %q", v)
		value = v
	}
	if i := strings.IndexFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		what := fmt.Sprintf("control character 0x%02X", value[i])
		if value[i] == '\t' {
			what = "a tab"
		}
		p.add(PolicyControlChar, true, n, text, "the value of %q contains %s: %s", key, what, quote(value))
		return
	}
	switch key {
	case "version":
		if p.duplicate(n, key, value) {
			return
		}
		if value != "STSv1" {
			p.add(PolicyVersion, true, n, text, "version is %s; it must be exactly \"STSv1\"", quote(value))
			return
		}
		p.pp.Draft.Version = value
	case "mode":
		if p.duplicate(n, key, value) {
			return
		}
		switch m := Mode(value); m {
		case ModeEnforce, ModeTesting, ModeNone:
			p.pp.Draft.Mode = m
		default:
			p.add(PolicyMode, true, n, text, "mode is %s%s", quote(value), modeHint(value))
		}
	case "max_age":
		if p.duplicate(n, key, value) {
			return
		}
		v, err := ParseMaxAge(value)
		if err != nil {
			p.add(PolicyMaxAge, true, n, text, "%v", err)
			return
		}
		p.pp.Draft.MaxAge = v
	case "mx":
		p.mxLines++
		if value == "" {
			p.add(PolicyMXInvalid, true, n, text, "the mx line has no value")
			return
		}
		if err := CheckPattern(value); err != nil {
			p.add(PolicyMXInvalid, true, n, text, "mx %s: %v", quote(value), err)
			return
		}
		c := lower(value)
		if p.mxSeen[c] {
			p.add(PolicyMXDuplicate, false, n, text, "mx %s is listed more than once", quote(value))
			return
		}
		p.mxSeen[c] = true
		p.pp.Draft.MX = append(p.pp.Draft.MX, value)
	default:
		if value == "" {
			p.add(PolicyNotKeyValue, true, n, text, "the field %q has no value", key)
			return
		}
		if want := knownKeyFor(key); want != "" {
			if p.typos == nil {
				p.typos, p.typoLine = map[string]string{}, map[string]int{}
			}
			if _, ok := p.typos[want]; !ok {
				p.typos[want], p.typoLine[want] = key, n
			}
			return
		}
		if _, dup := p.seen[key]; dup {
			return // first extension wins; nothing to report
		}
		p.seen[key] = value
		p.pp.Draft.Extensions = append(p.pp.Draft.Extensions, Extension{Name: key, Value: value})
		if strings.Contains(value, ":") {
			p.add(PolicyExtensionColon, false, n, text, "the value of the extension %q contains ':'; go-mtasts (maddy) and checkdmarc reject the whole policy because of it", key)
		} else {
			p.add(PolicyUnknownKey, false, n, text, "the extension field %q is ignored by senders", key)
		}
	}
}

// duplicate records the first value of a non-repeatable key and reports
// later ones (RFC 8461 §3.2: all but the first SHALL be ignored).
func (p *parser) duplicate(n int, key, value string) bool {
	first, ok := p.seen[key]
	if !ok {
		p.seen[key] = value
		return false
	}
	if first == value {
		p.add(PolicyDuplicateSame, false, n, key+": "+value, "%q appears again with the same value %s", key, quote(value))
	} else {
		p.add(PolicyDuplicateConflict, false, n, key+": "+value, "%q appears again with the value %s; RFC 8461 senders use the first value %s, but go-mtasts and postfix-mta-sts-resolver use the last one and checkdmarc rejects the file", key, quote(value), quote(first))
	}
	return true
}

func (p *parser) finish() {
	d := &p.pp.Draft
	for _, want := range []string{"version", "mode", "max_age", "mx"} {
		found, ok := p.typos[want]
		if !ok {
			continue
		}
		present := map[string]bool{"version": p.seenKey("version"), "mode": p.seenKey("mode"), "max_age": p.seenKey("max_age"), "mx": p.mxLines > 0}[want]
		if present {
			p.add(PolicyKeyCaseShadowed, false, p.typoLine[want], found, "the key %q is not %q (keys are case-sensitive); senders ignore that line and use the %q line", found, want, want)
		} else {
			p.add(PolicyKeyCase, false, p.typoLine[want], found, "the key %q is not %q (keys are case-sensitive), so senders see no %q field", found, want, want)
		}
	}
	hint := func(key string) string {
		if found, ok := p.typos[key]; ok {
			return fmt.Sprintf(" (found %q: keys are case-sensitive)", found)
		}
		return ""
	}
	if !p.seenKey("version") {
		p.add(PolicyVersion, true, 0, "", "the policy has no \"version: STSv1\" line%s", hint("version"))
	}
	if !p.seenKey("mode") {
		p.add(PolicyMode, true, 0, "", "the policy has no mode line%s", hint("mode"))
	}
	if !p.seenKey("max_age") {
		p.add(PolicyMaxAge, true, 0, "", "the policy has no max_age line%s", hint("max_age"))
	}
	if (d.Mode == ModeEnforce || d.Mode == ModeTesting) && p.mxLines == 0 {
		p.add(PolicyMXMissing, true, 0, "", "mode is %s but the policy has no mx line%s", d.Mode, hint("mx"))
	}
	if p.first != "" && p.first != "version" && p.seenKey("version") {
		p.add(PolicyFieldOrder, false, 1, p.first, "the first field is %q, not \"version\"", p.first)
	}
}

func (p *parser) seenKey(k string) bool { _, ok := p.seen[k]; return ok }

// ParseMaxAge parses a max_age value: 1 to 10 digits, at most 31557600
// (RFC 8461 §3.2 and erratum 7282).
func ParseMaxAge(v string) (int64, error) {
	if v == "" {
		return 0, fmt.Errorf("max_age is empty")
	}
	digits := 0
	for digits < len(v) && v[digits] >= '0' && v[digits] <= '9' {
		digits++
	}
	switch {
	case digits == 0:
		return 0, fmt.Errorf("max_age is %s; it must be whole seconds (digits only)", quote(v))
	case digits < len(v):
		rest := v[digits:]
		if strings.Trim(lower(rest), "smhdw") == "" {
			return 0, fmt.Errorf("max_age is %s; units are not allowed, write the number of seconds", quote(v))
		}
		return 0, fmt.Errorf("max_age is %s; it must be whole seconds (digits only)", quote(v))
	case digits > 10:
		return 0, fmt.Errorf("max_age %s has %d digits; at most 10 are allowed and the value may not exceed %d", quote(v), digits, MaxMaxAge)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("max_age %s: %v", quote(v), err)
	}
	if n > MaxMaxAge {
		return 0, fmt.Errorf("max_age %d is larger than the maximum %d (one year)", n, MaxMaxAge)
	}
	return n, nil
}

// CheckPattern checks an mx pattern: an A-label host name, optionally with a
// leading "*." (RFC 8461 §3.2). The error says what is wrong in plain words.
func CheckPattern(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty pattern")
	case strings.ContainsAny(v, ", \t"):
		return fmt.Errorf("several hosts on one line; write one \"mx:\" line per host")
	case v == ".":
		return fmt.Errorf("\".\" is not a host name")
	case strings.HasSuffix(v, "."):
		return fmt.Errorf("ends with a dot; write %q", strings.TrimSuffix(v, "."))
	case strings.HasPrefix(v, "."):
		return fmt.Errorf("the draft-era form %q is not valid; write %q", v, "*"+v)
	}
	// RFC 8461 §4.1 matches patterns against MX host names by the rules of
	// RFC 6125, which cover DNS names only (RFC 6125 §1.7.2), and a host
	// name never has the form of an IPv4 address (RFC 1123 §2.1). So an
	// address is no pattern, with or without "*." (mox and postfix-tlspol
	// reject both).
	if _, err := netip.ParseAddr(strings.Trim(strings.TrimPrefix(v, "*."), "[]")); err == nil {
		return fmt.Errorf("is an IP address; mx patterns are host names")
	}
	if host, port, ok := strings.Cut(v, ":"); ok {
		if _, err := strconv.Atoi(port); err == nil {
			return fmt.Errorf("includes a port; write %q", host)
		}
		return fmt.Errorf("contains ':'")
	}
	name := v
	if strings.HasPrefix(v, "*.") {
		name = v[2:]
	}
	if strings.Contains(name, "*") {
		switch {
		case strings.HasPrefix(name, "*."):
			return fmt.Errorf("only one wildcard label is allowed, and only as the left-most label")
		case v[0] == '*' && !strings.HasPrefix(v, "*."):
			return fmt.Errorf("a wildcard must be the whole left-most label, as in %q", "*."+strings.TrimLeft(v, "*."))
		default:
			return fmt.Errorf("a wildcard may only be the whole left-most label (\"*.\"), not part of a label or an inner label")
		}
	}
	for _, r := range name {
		if r >= utf8.RuneSelf {
			if a := domain.ToASCII(v); a != "" {
				return fmt.Errorf("is a U-label; write the A-label form %q", a)
			}
			return fmt.Errorf("contains non-ASCII characters; use the A-label (xn--) form")
		}
	}
	if strings.Contains(name, "_") {
		return fmt.Errorf("contains '_'; host names may only contain letters, digits and hyphens")
	}
	if err := domain.CheckHostname(name); err != nil {
		return err
	}
	return nil
}

// LooksLikeHTML reports whether a body is a web page rather than a policy.
func LooksLikeHTML(body []byte) bool {
	head := body
	if len(head) > 2048 {
		head = head[:2048]
	}
	t := bytes.ToLower(bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n"))
	if bytes.HasPrefix(t, []byte("<!doctype html")) || bytes.HasPrefix(t, []byte("<html")) {
		return true
	}
	return bytes.HasPrefix(t, []byte("<")) && (bytes.Contains(t, []byte("<head")) || bytes.Contains(t, []byte("<body")) || bytes.Contains(t, []byte("<title")))
}

func notKVHint(text string) string {
	t := strings.TrimSpace(text)
	switch {
	case strings.HasPrefix(t, "#") || strings.HasPrefix(t, "//"):
		return " (comments are not allowed)"
	case strings.HasPrefix(t, "["):
		return " (sections are not allowed)"
	case strings.HasPrefix(t, "-"):
		return " (YAML lists are not allowed; write one \"mx:\" line per host)"
	case strings.HasPrefix(t, "<"):
		return " (this looks like HTML)"
	case strings.HasPrefix(strings.ToLower(t), "mode ") || strings.HasPrefix(strings.ToLower(t), "version ") || strings.HasPrefix(strings.ToLower(t), "mx ") || strings.HasPrefix(strings.ToLower(t), "max_age "):
		return " (the ':' after the key is missing)"
	}
	return ""
}

func modeHint(v string) string {
	switch {
	case v == "":
		return "; it must be \"enforce\", \"testing\" or \"none\""
	case v == "report":
		return "; \"report\" is the draft-era name of \"testing\""
	case Mode(lower(v)) == ModeEnforce || Mode(lower(v)) == ModeTesting || Mode(lower(v)) == ModeNone:
		return fmt.Sprintf("; values are case-sensitive, write %q", lower(v))
	case strings.HasPrefix(lower(v), "enforc"):
		return "; write \"enforce\""
	case strings.HasPrefix(lower(v), "test"):
		return "; write \"testing\""
	}
	return "; it must be \"enforce\", \"testing\" or \"none\""
}

// knownKeyFor returns the policy key a misspelled key was meant to be, or "".
func knownKeyFor(key string) string {
	k := lower(key)
	norm := strings.NewReplacer("-", "", "_", "", ".", "").Replace(k)
	for _, want := range []string{"version", "mode", "max_age", "mx"} {
		if k == want || norm == strings.ReplaceAll(want, "_", "") {
			return want
		}
	}
	for _, want := range []string{"version", "mode", "max_age"} {
		if editDistance(k, want) == 1 {
			return want
		}
	}
	if len(k) == 3 && strings.Contains(k, "mx") { // "nmx", "mxs", "m x" (Zuplu #95)
		return "mx"
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func firstKey(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	k, _, _ := bytes.Cut(line, []byte(":"))
	return "\ufeff" + string(bytes.TrimSpace(k))
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return len(strings.ToValidUTF8(string(b[:i]), "\ufffd"))
		}
		i += size
	}
	return 0
}

func hasFatal(ps []Problem) bool {
	for _, p := range ps {
		if p.Fatal {
			return true
		}
	}
	return false
}

// RepairPattern turns a broken mx value into the patterns it was meant to
// be, when that is unambiguous: a trailing dot or port dropped, a list
// split, the draft-era ".example.net" form made "*.example.net", a U-label
// converted to A-labels. It returns nil when the value cannot be repaired.
func RepairPattern(v string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		p := strings.TrimSuffix(part, ".")
		if host, port, ok := strings.Cut(p, ":"); ok {
			if _, err := strconv.Atoi(port); err != nil {
				return nil
			}
			p = host
		}
		if strings.HasPrefix(p, ".") {
			p = "*" + p
		}
		if a := domain.ToASCII(strings.TrimPrefix(p, "*.")); a != "" && a != strings.TrimPrefix(p, "*.") {
			if strings.HasPrefix(p, "*.") {
				a = "*." + a
			}
			p = a
		}
		if CheckPattern(p) != nil {
			return nil
		}
		out = append(out, p)
	}
	return out
}
