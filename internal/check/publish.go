package check

import (
	"net/netip"
	"strings"

	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// RecordTTL is the TTL of every record we suggest publishing: short enough
// that a new id reaches senders within an hour (STS-TXT-21). The record
// step reports a longer TTL on _mta-sts.
const RecordTTL = 3600

// Record is a DNS record to publish or delete: the DNS part of a fix, and
// every record `mailtls policy` and `mailtls serve records` print.
type Record struct {
	Action string `json:"action"` // "publish" or "delete"
	Name   string `json:"name"`   // owner name, no trailing dot
	Type   string `json:"type"`
	TTL    int    `json:"ttl"`
	// Value is the TXT value unquoted, or the record data; for a delete,
	// the value to delete ("" deletes every record of the type).
	Value string `json:"value"`
	// Placeholder says that Value must be edited before publishing.
	Placeholder string `json:"placeholder,omitempty"`
}

// STSRecord is the _mta-sts TXT record to publish for a policy id (RFC
// 8461 §3.1).
func STSRecord(domain, id string) Record {
	return Record{Action: "publish", Name: "_mta-sts." + domain, Type: "TXT", TTL: RecordTTL, Value: mtasts.RecordText(id)}
}

// TLSRPTRecord is the _smtp._tls TXT record to publish for report URIs
// (RFC 8460 §3).
func TLSRPTRecord(domain string, rua []string) Record {
	return Record{Action: "publish", Name: "_smtp._tls." + domain, Type: "TXT", TTL: RecordTTL, Value: tlsrpt.RecordText(rua)}
}

// HostRecords point mta-sts.<domain> at a policy host: a CNAME to cname, or
// else an A or AAAA record per address. Nil when both are empty.
func HostRecords(domain, cname string, addrs []string) []Record {
	name := "mta-sts." + domain
	if cname != "" {
		return []Record{{Action: "publish", Name: name, Type: "CNAME", TTL: RecordTTL, Value: strings.TrimSuffix(cname, ".") + "."}}
	}
	var out []Record
	for _, a := range addrs {
		typ := "A"
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() && !ip.Is4In6() {
			typ = "AAAA"
		}
		out = append(out, Record{Action: "publish", Name: name, Type: typ, TTL: RecordTTL, Value: a})
	}
	return out
}
