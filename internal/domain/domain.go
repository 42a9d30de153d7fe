// Package domain turns what a user types into the mail domain to scan, and
// checks host names. A mail domain is handled in its A-label form, lower case,
// without a trailing dot (RFC 8461 §3.2 requires A-labels; RFC 5890).
package domain

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid domain")

// InvalidError is the error Parse returns: why the input cannot be a mail
// domain. It wraps ErrInvalid.
type InvalidError struct {
	Reason string // for the user: "empty", "\"a..b\" has an empty label", …
}

func (e *InvalidError) Error() string { return ErrInvalid.Error() + ": " + e.Reason }

func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// MaxInputLength bounds what Parse reads from a user.
const MaxInputLength = 1024

// lookup maps user input the way a resolver would (case folding, IDNA 2008
// with UTS #46 mapping) and insists on letters, digits and hyphens.
var lookup = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

var display = idna.New(idna.Transitional(false))

// Parse normalises user input to a mail domain: it accepts "Example.COM.",
// U-labels ("bücher.example"), a URL ("https://example.com/") and an
// address ("user@example.com"), and returns the A-label domain with notes
// that say what was changed. IP addresses and names that cannot be a mail
// domain are refused with an *InvalidError (which wraps ErrInvalid).
func Parse(input string) (name string, notes []string, err error) {
	s := strings.TrimSpace(input)
	if s == "" {
		return "", nil, invalid("empty")
	}
	if len(s) > MaxInputLength {
		return "", nil, invalid("%d bytes is too long for a domain", len(s))
	}
	if !utf8.ValidString(s) {
		return "", nil, invalid("%q is not valid UTF-8", s)
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			return "", nil, invalid("%q looks like a URL but has no host", s)
		}
		notes = append(notes, fmt.Sprintf("took the host %q from the URL %q", u.Hostname(), s))
		s = u.Hostname()
	} else if rest, ok := cutPrefixFold(s, "mailto:"); ok {
		s = rest
		notes = append(notes, fmt.Sprintf("took the address from %q", input))
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		notes = append(notes, fmt.Sprintf("took the domain %q from the address %q", s[i+1:], s))
		s = s[i+1:]
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return "", notes, invalid("%s is an IP address; MTA-STS applies to domain names, not address literals (RFC 8461 §3.4)", a)
	}
	for _, prefix := range []string{"_mta-sts.", "_smtp._tls."} {
		if rest, ok := cutPrefixFold(s, prefix); ok && rest != "" {
			notes = append(notes, fmt.Sprintf("%q is a record name; scanning the domain %q", s, rest))
			s = rest
		}
	}
	trimmed := strings.TrimSuffix(s, ".")
	if trimmed == "" || strings.HasSuffix(trimmed, ".") || strings.HasPrefix(trimmed, ".") || strings.Contains(trimmed, "..") {
		return "", notes, invalid("%q has an empty label", s)
	}
	ascii, err := lookup.ToASCII(trimmed)
	if err != nil {
		return "", notes, invalid("%q: %s", trimmed, idnaReason(err))
	}
	if err := CheckHostname(ascii); err != nil {
		return "", notes, invalid("%q: %v", trimmed, err)
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", notes, invalid("%q is a single label; a mail domain has at least two (such as example.com)", ascii)
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", notes, invalid("%q ends in the all-numeric label %q, which no top-level domain is", ascii, tld)
	}
	if ascii != s {
		switch {
		case ascii == strings.ToLower(trimmed):
			notes = append(notes, fmt.Sprintf("normalised %q to %q", s, ascii))
		default:
			notes = append(notes, fmt.Sprintf("converted %q to its A-label form %q", s, ascii))
		}
	}
	return ascii, notes, nil
}

// cutPrefixFold is strings.CutPrefix with an ASCII case-insensitive prefix.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func idnaReason(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "idna: ")
	return "not a valid host name (" + msg + ")"
}

// Unicode returns the U-label form of an A-label name for display, or the
// name itself when it has no valid U-label form.
func Unicode(name string) string {
	u, err := display.ToUnicode(name)
	if err != nil {
		return name
	}
	return u
}

// CheckHostname reports whether name (without trailing dot) is an RFC 5321
// Domain in A-label form: labels of 1–63 letters, digits and hyphens that
// neither start nor end with a hyphen, 253 octets at most.
func CheckHostname(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("name is %d octets long; the limit is 253", len(name))
	}
	for _, label := range strings.Split(name, ".") {
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label")
	case len(label) > 63:
		return fmt.Errorf("label %q is %d octets long; the limit is 63", label, len(label))
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			continue
		}
		if c >= utf8.RuneSelf {
			return fmt.Errorf("label %q is not ASCII; use the A-label (xn--) form", label)
		}
		return fmt.Errorf("label %q contains %q; only letters, digits and hyphens are allowed", label, c)
	}
	if strings.HasPrefix(strings.ToLower(label), "xn--") {
		if _, err := idna.Punycode.ToUnicode(label); err != nil {
			return fmt.Errorf("label %q is not a valid A-label", label)
		}
	}
	return nil
}

// ToASCII converts a name that may contain U-labels to A-labels, for
// suggesting the form a policy must use. It returns "" when that fails.
func ToASCII(name string) string {
	a, err := lookup.ToASCII(strings.TrimSuffix(name, "."))
	if err != nil {
		return ""
	}
	return a
}

// Canonical lower-cases name and drops one trailing dot, for comparisons
// (RFC 6125 §6.4.1: ASCII names compare case-insensitively).
func Canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// IsSubdomainOf reports whether name is strictly below parent.
func IsSubdomainOf(name, parent string) bool {
	name, parent = Canonical(name), Canonical(parent)
	return strings.HasSuffix(name, "."+parent)
}
