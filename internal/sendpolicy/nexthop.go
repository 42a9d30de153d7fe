// Package sendpolicy decides, for a sending MTA, which TLS policy applies
// to a next-hop domain: DANE (RFC 7672) first, then MTA-STS (RFC 8461),
// and renders the decision as a Postfix smtp_tls_policy_maps reply. It is
// pure: the evidence (DNS answers, the MTA-STS policy in force) comes in,
// a Decision with the rule that decided and why goes out.
package sendpolicy

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/domain"
)

// NextHop turns a Postfix smtp_tls_policy_maps lookup key into the Policy
// Domain (RFC 8461 §3.4, STS-TXT-20): "[relay.example]:587" and
// "relay.example:25" name the smart host relay.example; case and one
// trailing dot are dropped; U-labels become A-labels. ok is false, with
// the reason, when no policy can exist for the key: an empty key, a parent
// domain lookup (".example.com"), an address literal (RFC 8461 §3.4), or
// anything that is not a host name (non-ASCII garbage, over-long labels).
func NextHop(key string) (name string, why string, ok bool) {
	if plainHostname(key) {
		return key, "", true // what Postfix sends: no copy, no allocation
	}
	s := strings.TrimSpace(key)
	if s == "" {
		return "", "empty key", false
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "unbalanced '['", false
		}
		rest := s[end+1:]
		if rest != "" && !validPort(rest) {
			return "", "junk after ']'", false
		}
		s = s[1:end]
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		if !validPort(s[i:]) {
			return "", "bad port", false
		}
		s = s[:i]
	}
	if a, err := netip.ParseAddr(strings.TrimPrefix(strings.TrimPrefix(s, "ipv6:"), "IPv6:")); err == nil {
		return "", "address literal " + a.String() + " (RFC 8461 §3.4: no policy for address literals)", false
	}
	if strings.HasPrefix(s, ".") {
		return "", "parent-domain lookup", false
	}
	s = strings.TrimSuffix(s, ".")
	if !utf8.ValidString(s) {
		return "", "not UTF-8", false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		s = strings.ToLower(s)
	} else if s = domain.ToASCII(s); s == "" {
		return "", "not a valid internationalised domain name", false
	}
	if err := domain.CheckHostname(s); err != nil {
		return "", "not a host name: " + err.Error(), false
	}
	return s, "", true
}

// validPort reports whether s is ":" followed by a port number or service
// name, as Postfix writes next hops ("[host]:port", "host:service").
func validPort(s string) bool {
	if len(s) < 2 || s[0] != ':' || len(s) > 33 {
		return false
	}
	for _, c := range s[1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// plainHostname reports whether s is already a canonical A-label host name:
// lower-case letters, digits and hyphens, labels of 1 to 63 octets not
// starting or ending with a hyphen, 253 octets at most, not all digits at
// the end (an IPv4 literal), no trailing dot, and no "xn--" label (which
// needs the full check).
func plainHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	start, digitsOnly := 0, true
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			l := s[start:i]
			if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || strings.HasPrefix(l, "xn--") {
				return false
			}
			start = i + 1
			continue
		}
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c == '-':
			digitsOnly = false
		case c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return !digitsOnly
}
