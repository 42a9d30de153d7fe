// Package resolve is the DNS layer of mailtls. It asks a recursive resolver
// one question at a time and keeps every answer as serialisable evidence (an
// [Answer], JSON-encodable) so that a scan can be saved, replayed and diffed.
//
// # Temporary versus absent
//
// A scan must never report "not configured" when DNS merely failed. Only
// NXDOMAIN ([StatusNXDomain]) and NOERROR without records of the asked type
// ([StatusNoData]) mean that something is absent ([Status.Absent]). SERVFAIL,
// REFUSED, timeouts, network errors, malformed replies, replies that may be
// missing records (truncated even over TCP, or holding fewer records than
// their header announces), empty replies from a server that neither
// recursed nor is authoritative (a referral), other rcodes and broken CNAME
// chains mean "could not determine, retry later"
// ([Status.Temporary]); a caller must not turn them into "missing". This is
// the split RFC 7672 §2.1.1 draws between secure/insecure answers (normal
// results, including NXDOMAIN and NODATA) and lookup errors.
//
// # AD trust model
//
// Every query sets the DO bit and leaves CD clear, so a validating resolver
// validates and reports the outcome in the AD bit of its reply. The AD bit is
// only as good as the path from the resolver: nothing protects a reply from a
// remote resolver on the way to us, so anyone on the path can set the bit
// (RFC 7672 §2.1.1, RFC 6698 §4.1). [Answer.AD] therefore records the bit as
// received, and [Answer.Authenticated] is true only when the bit came from a
// server the caller trusts: by default loopback resolvers (127.0.0.0/8, ::1),
// or the servers accepted by [Client.TrustAD].
package resolve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Status classifies the outcome of one lookup.
type Status string

// The statuses of a lookup. Absent statuses are definitive answers; temporary
// ones mean the answer could not be determined.
const (
	StatusOK       Status = "ok"       // records of the asked type
	StatusNXDomain Status = "nxdomain" // name does not exist (after following CNAMEs)
	StatusNoData   Status = "nodata"   // name exists, no records of that type
	StatusServFail Status = "servfail" // a server answered SERVFAIL
	StatusRefused  Status = "refused"  // a server answered REFUSED
	StatusTimeout  Status = "timeout"  // no answer in time (per attempt or ctx deadline)
	StatusError    Status = "error"    // network error, malformed or incomplete reply (still truncated over TCP, fewer records than announced, a referral), other rcodes, CNAME loop or too long, invalid name, canceled
)

// Temporary reports whether s means "could not determine": the lookup should
// be retried later and must not be read as absence (RFC 7672 §2.1.1).
func (s Status) Temporary() bool {
	switch s {
	case StatusServFail, StatusRefused, StatusTimeout, StatusError:
		return true
	}
	return false
}

// Absent reports whether s is a definitive "no such records" answer.
func (s Status) Absent() bool {
	return s == StatusNXDomain || s == StatusNoData
}

// Record is one resource record as evidence. Name and Value are always set;
// the typed fields are filled for the types that have them.
type Record struct {
	Name  string `json:"name"`  // owner, lower-case, no trailing dot
	Type  string `json:"type"`  // "TXT", "MX", "A", "AAAA", "CNAME", "TLSA", ...
	TTL   uint32 `json:"ttl"`   // as received
	Value string `json:"value"` // RDATA in presentation form, as miekg/dns prints it after the header

	// Text holds a TXT record's character-strings exactly as received: not
	// joined, escapes decoded, each string holding the raw octets. JSON
	// cannot carry octets that are not UTF-8 (encoding/json replaces them
	// with U+FFFD); Value keeps them exactly, escaped as \DDD.
	Text []string `json:"text,omitempty"`

	Preference uint16 `json:"preference,omitempty"` // MX
	// Host is the MX exchange or CNAME target as published (case kept) minus
	// one trailing dot; the root (a null MX, RFC 7505) stays ".".
	Host string `json:"host,omitempty"`

	Addr netip.Addr `json:"addr,omitzero"` // A / AAAA

	Usage        uint8  `json:"usage,omitempty"`         // TLSA certificate usage
	Selector     uint8  `json:"selector,omitempty"`      // TLSA selector
	MatchingType uint8  `json:"matching_type,omitempty"` // TLSA matching type
	Data         string `json:"data,omitempty"`          // TLSA association data, lower-case hex
}

// MX is one mail exchanger from an MX answer.
type MX struct {
	Preference uint16
	Host       string // as published minus the trailing dot; "." for a null MX
}

// Answer is the evidence of one lookup: the question, how it ended, the CNAME
// chain followed and the records found. A Lookup never returns nil.
type Answer struct {
	Name   string `json:"name"` // queried name, lower-case, no trailing dot
	Type   string `json:"type"` // queried type, e.g. "TXT"
	Status Status `json:"status"`
	Rcode  string `json:"rcode,omitempty"` // rcode of the final reply, e.g. "NOERROR", "SERVFAIL"; empty if no reply

	// AD is the AD bit as received. When a CNAME chain needed more than one
	// query it is the AND over every reply used, because an insecure step
	// makes everything after it insecure (RFC 7672 §2.2.2).
	AD bool `json:"ad"`
	// Authenticated is AD from servers trusted to validate (see
	// [Client.TrustAD]), ANDed over every reply used like AD.
	Authenticated bool `json:"authenticated"`
	// Validating is true when every reply used came from a server trusted
	// to validate DNSSEC: then a clear AD bit means "insecure", while from
	// any other server the DNSSEC status is unknown.
	Validating bool `json:"validating"`

	Server string `json:"server,omitempty"` // the server that gave the final answer (or the reported failure)
	TCP    bool   `json:"tcp,omitempty"`    // the final answer came over TCP (after TC)

	CNAMEs  []Record `json:"cnames,omitempty"`  // CNAME chain followed, in order
	Records []Record `json:"records,omitempty"` // RRs of the asked type only, owned by the final name
	// NegativeTTL is how long an NXDOMAIN or NODATA answer may be cached:
	// the smaller of the TTL and the MINIMUM field of the SOA record in the
	// reply's authority section (RFC 2308 §5); 0 without an SOA.
	NegativeTTL uint32 `json:"negative_ttl,omitempty"`

	// Error is a human-readable cause when Status is temporary. For failed
	// attempts it lists each attempt's server and failure, separated by "; ".
	Error string `json:"error,omitempty"`

	Duration   time.Duration `json:"-"`           // wall time of the whole Lookup
	DurationMS float64       `json:"duration_ms"` // Duration in milliseconds
}

// TXT returns each TXT record's character-strings joined without separator,
// the form RFC 8461 §3.1 and RFC 8460 §3 parse.
func (a *Answer) TXT() []string {
	var out []string
	for _, r := range a.Records {
		if r.Type != "TXT" {
			continue
		}
		n := 0
		for _, s := range r.Text {
			n += len(s)
		}
		buf := make([]byte, 0, n)
		for _, s := range r.Text {
			buf = append(buf, s...)
		}
		out = append(out, string(buf))
	}
	return out
}

// MX returns the MX records in the order received.
func (a *Answer) MX() []MX {
	var out []MX
	for _, r := range a.Records {
		if r.Type == "MX" {
			out = append(out, MX{Preference: r.Preference, Host: r.Host})
		}
	}
	return out
}

// NullMX reports whether an MX answer is a null MX (RFC 7505: a single MX
// record with the root as exchange): the domain accepts no mail.
func (a *Answer) NullMX() bool {
	mx := a.MX()
	return len(mx) == 1 && (mx[0].Host == "." || mx[0].Host == "")
}

// Addrs returns the addresses of the A and AAAA records.
func (a *Answer) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, r := range a.Records {
		if r.Addr.IsValid() {
			out = append(out, r.Addr)
		}
	}
	return out
}

// Target returns the final name after the CNAME chain, lower-case without
// trailing dot, or Name if no CNAME was followed.
func (a *Answer) Target() string {
	if len(a.CNAMEs) == 0 {
		return a.Name
	}
	return ownerName(a.CNAMEs[len(a.CNAMEs)-1].Host)
}

// MinTTL returns the smallest TTL among the CNAMEs and records, or 0 when
// there are none (negative answers carry no TTL here).
func (a *Answer) MinTTL() uint32 {
	var minTTL uint32
	first := true
	for _, set := range [][]Record{a.CNAMEs, a.Records} {
		for _, r := range set {
			if first || r.TTL < minTTL {
				minTTL = r.TTL
				first = false
			}
		}
	}
	return minTTL
}

// UnmarshalJSON decodes an Answer and restores Duration from duration_ms.
func (a *Answer) UnmarshalJSON(b []byte) error {
	type plain Answer // no methods, so no recursion
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*a = Answer(p)
	a.Duration = time.Duration(math.Round(a.DurationMS * float64(time.Millisecond)))
	return nil
}

// clone returns a deep copy of a.
func (a *Answer) clone() *Answer {
	c := *a
	c.CNAMEs = cloneRecords(a.CNAMEs)
	c.Records = cloneRecords(a.Records)
	return &c
}

func cloneRecords(rs []Record) []Record {
	if rs == nil {
		return nil
	}
	out := make([]Record, len(rs))
	for i, r := range rs {
		if r.Text != nil {
			r.Text = append([]string(nil), r.Text...)
		}
		out[i] = r
	}
	return out
}

func durationMS(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// Resolver is what [Client] and [Fake] have in common. Consumers may declare
// their own one-method interface instead.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) *Answer
}

// HostAddrs looks up a host's A and AAAA records with r (a *Client or
// a fake): its addresses, or an error naming both answers' rcodes when
// it has none.
func HostAddrs(ctx context.Context, r interface {
	Lookup(ctx context.Context, name string, qtype uint16) *Answer
}, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var rcodes []string
	for _, q := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a := r.Lookup(ctx, host, q)
		out = append(out, a.Addrs()...)
		rcodes = append(rcodes, a.Rcode)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address (A and AAAA answered %s)", strings.Join(rcodes, ", "))
	}
	return out, nil
}
