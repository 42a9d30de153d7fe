package resolve

import "github.com/miekg/dns"

// The query types mailtls asks for, so that callers name them without the
// DNS library: miekg/dns stays inside this package.
const (
	TypeA    = dns.TypeA
	TypeAAAA = dns.TypeAAAA
	TypeMX   = dns.TypeMX
	TypeTXT  = dns.TypeTXT
	TypeTLSA = dns.TypeTLSA
	TypeSOA  = dns.TypeSOA
)

// TypeString names a query type ("TXT").
func TypeString(qtype uint16) string { return dns.TypeToString[qtype] }
