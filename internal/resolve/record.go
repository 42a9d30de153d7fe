package resolve

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// newRecord converts a miekg/dns RR into evidence.
func newRecord(rr dns.RR) Record {
	h := rr.Header()
	r := Record{
		Name:  ownerName(h.Name),
		Type:  typeString(h.Rrtype),
		TTL:   h.Ttl,
		Value: strings.TrimPrefix(rr.String(), h.String()),
	}
	switch v := rr.(type) {
	case *dns.TXT:
		r.Text = make([]string, len(v.Txt))
		for i, s := range v.Txt {
			r.Text[i] = unescapeText(s)
		}
	case *dns.MX:
		r.Preference = v.Preference
		r.Host = hostName(v.Mx)
	case *dns.CNAME:
		r.Host = hostName(v.Target)
	case *dns.A:
		if ip, ok := netip.AddrFromSlice(v.A.To4()); ok {
			r.Addr = ip
		}
	case *dns.AAAA:
		if ip, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
			r.Addr = ip
		}
	case *dns.TLSA:
		r.Usage = v.Usage
		r.Selector = v.Selector
		r.MatchingType = v.MatchingType
		r.Data = strings.ToLower(v.Certificate)
	}
	return r
}

// hostName is a target name as published minus one trailing dot; the root
// stays ".".
func hostName(s string) string {
	if s == "." {
		return s
	}
	return strings.TrimSuffix(s, ".")
}

// typeString is the mnemonic of an RR type, or "TYPEnnn" (RFC 3597).
func typeString(t uint16) string {
	return dns.Type(t).String()
}
