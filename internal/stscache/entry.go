// Package stscache is the sender's MTA-STS policy cache (RFC 8461 §5.1,
// spec-checklist §D): an in-memory map bounded by least-recent use, backed
// by a SQLite file (pure-Go modernc.org/sqlite) so that a restart keeps
// every policy and an entry evicted from memory is read back from disk.
//
// Entries are immutable once stored: a change is a new Entry put in place
// of the old one, so readers never lock an entry. The rules that make and
// replace entries (RFC 8461 §3.3: an unexpired policy survives refresh
// failures; the TXT id is checked before refetching; mode none replaces)
// live in the resolver; this package keeps what they decided.
package stscache

import (
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/sendpolicy"
)

// Outcome is the result of the last discovery of a domain.
type Outcome uint8

// Outcomes.
const (
	OutcomeNone        Outcome = iota // never looked up
	OutcomePolicy                     // a valid policy was fetched, or the TXT id still matched the cached one
	OutcomeNoRecord                   // no MTA-STS TXT record (NXDOMAIN, NODATA, no v=STSv1 record)
	OutcomeBadRecord                  // a record that is invalid or not exactly one (RFC 8461 §3.1)
	OutcomeFetchFailed                // the HTTPS fetch failed or the policy was invalid (RFC 8461 §3.3, STS-POL-19)
	OutcomeTemporary                  // the TXT lookup failed temporarily (STS-TXT-16)
)

var outcomeNames = [...]string{"none", "policy", "no-record", "bad-record", "fetch-failed", "temporary"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcomes lists every outcome, for metrics with fixed label values.
func Outcomes() []Outcome {
	return []Outcome{OutcomeNone, OutcomePolicy, OutcomeNoRecord, OutcomeBadRecord, OutcomeFetchFailed, OutcomeTemporary}
}

// Entry is what the sender knows about one Policy Domain. Times are Unix
// seconds in a uint32 (enough until 2106), which keeps a million entries
// small (BenchmarkResolverMemory).
type Entry struct {
	Domain string

	// The policy in force: the last policy fetched successfully, with the
	// record id it was fetched under. It applies until FetchedAt + max_age
	// (RFC 8461 §3.2, STS-SND-1), whatever happens to later refreshes.
	ID     string
	Policy *mtasts.Policy

	// The last discovery: what it found, why in a few words (bounded),
	// and FailedID, the record id whose fetch failed at At: the same id is
	// not fetched again for five minutes (RFC 8461 §3.3, STS-FETCH-14).
	Detail   string
	FailedID string

	// DANE is the DANE verdict, valid until DANEUntil (the smallest TTL
	// of its DNS answers, bounded).
	DANE *sendpolicy.DANEVerdict

	FetchedAt uint32
	// CheckedAt is the last time the TXT record showed the same id, so
	// the policy was known current without a refetch.
	CheckedAt uint32
	At        uint32
	// NextCheck is the earliest time the domain is looked up again when
	// Postfix asks (negative and temporary caching); RefreshAt is when
	// the background refresh looks again (proactive, with jitter).
	NextCheck uint32
	RefreshAt uint32
	DANEUntil uint32
	Outcome   Outcome
}

// Sec converts Unix seconds for an Entry's time fields (0 and negative
// times become 0, "never").
func Sec(unix int64) uint32 {
	if unix <= 0 {
		return 0
	}
	if unix > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(unix)
}

// Expires is when the policy in force stops applying (0: no policy).
func (e *Entry) Expires() int64 {
	if e == nil || e.Policy == nil {
		return 0
	}
	return int64(e.FetchedAt) + e.Policy.MaxAge
}

// Valid reports whether a policy is in force at now (RFC 8461 §5.1 step
// 1: time since fetch has not exceeded max_age).
func (e *Entry) Valid(now int64) bool {
	return e != nil && e.Policy != nil && now < int64(e.FetchedAt)+e.Policy.MaxAge
}

// Clone returns a shallow copy to modify (the policy and DANE verdict are
// shared: they are never modified in place).
func (e *Entry) Clone() *Entry {
	c := *e
	return &c
}

// compact copies the policy's strings so that a cached entry does not
// keep a whole response body alive, and shares the constant ones.
func compact(p *mtasts.Policy) *mtasts.Policy {
	if p == nil {
		return nil
	}
	c := &mtasts.Policy{Version: "STSv1", MaxAge: p.MaxAge}
	switch p.Mode { // the constants, not substrings of a body
	case mtasts.ModeEnforce:
		c.Mode = mtasts.ModeEnforce
	case mtasts.ModeTesting:
		c.Mode = mtasts.ModeTesting
	case mtasts.ModeNone:
		c.Mode = mtasts.ModeNone
	default:
		c.Mode = mtasts.Mode(cloneString(string(p.Mode)))
	}
	if len(p.MX) > 0 {
		c.MX = make([]string, len(p.MX))
		for i, m := range p.MX {
			c.MX[i] = cloneString(m)
		}
	}
	for _, x := range p.Extensions {
		c.Extensions = append(c.Extensions, mtasts.Extension{Name: cloneString(x.Name), Value: cloneString(x.Value)})
	}
	return c
}

func cloneString(s string) string { return string([]byte(s)) }
