// Package domainverify proves that an account controls a saved domain, by
// DNS, the way Let's Encrypt's dns-01 challenge (RFC 8555 §8.4) and search
// consoles do: the account publishes a TXT record holding a random token
// made for it and the domain, and a lookup finds it. The TLS-RPT reports
// of a domain (who sends it mail, from which addresses) are private and
// shown only to verified accounts; the public DNS and MTA-STS state needs
// no proof (docs/accounts.md, "Verifying a domain").
package domainverify

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
)

// Label is the owner name's first label. Its own underscored name
// (RFC 8552 style), not _mta-sts or _smtp._tls: those records are read by
// senders, which must not see our token (an extra TXT string there can
// break a strict parser), and an admin can delete this one once it has
// served without touching mail delivery. Distinct from _acme-challenge so
// that removing one never removes the other.
const Label = "_mailtls-verify"

// Prefix starts the record's value, so a name holding several tokens
// (several accounts, other tools) is read by looking for ours.
const Prefix = "mailtls-verify="

// Lapse is how long the record may stay absent, by the rechecks at the
// daily monitoring scans, before the verification ends. A temporary DNS
// failure never counts as absent.
const Lapse = 7 * 24 * time.Hour

// Name is where the record is published for domain (an A-label).
func Name(domain string) string { return Label + "." + domain }

// Value is the TXT record's text for token.
func Value(token string) string { return Prefix + token }

// NewToken is a fresh token: 160 random bits, base32 in lower case (DNS
// tools and copy-paste keep it intact; no padding, no case trouble).
func NewToken() string {
	var b [20]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Resolver looks records up (resolve.Client; the lab's in tests).
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) *resolve.Answer
}

// Outcome of one lookup.
type Outcome int

const (
	// Found: a TXT record at Name holds Value(token).
	Found Outcome = iota
	// Absent: the name has no such record (NXDOMAIN, no TXT, or TXT
	// records without our token).
	Absent
	// Unknown: the lookup failed (SERVFAIL, timeout): could not check,
	// retry. Never read as absent.
	Unknown
)

// Check looks for Value(token) at Name(domain). The answer is returned
// for the page to show (its status and the records found).
func Check(ctx context.Context, r Resolver, domain, token string) (Outcome, *resolve.Answer) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a := r.Lookup(ctx, Name(domain), resolve.TypeTXT)
	if a.Status.Temporary() || (!a.Status.Absent() && a.Status != resolve.StatusOK) {
		return Unknown, a
	}
	want := Value(token)
	// A TXT record's strings are one text (Answer.TXT joins them): a long
	// value may be split by the publisher.
	for _, txt := range a.TXT() {
		if strings.TrimSpace(txt) == want {
			return Found, a
		}
	}
	return Absent, a
}

// Apply is v after a check at now: found verifies (or keeps verified) and
// clears the absence; absent starts or continues the absence, and ends a
// verification once the record has been absent for Lapse; unknown
// changes nothing.
func Apply(v store.DomainVerification, o Outcome, now time.Time) store.DomainVerification {
	switch o {
	case Found:
		if v.VerifiedAt.IsZero() {
			v.VerifiedAt = now
		}
		v.CheckedAt, v.MissingSince = now, time.Time{}
	case Absent:
		v.CheckedAt = now
		if v.MissingSince.IsZero() {
			v.MissingSince = now
		}
		if !now.Before(v.MissingSince.Add(Lapse)) {
			v.VerifiedAt = time.Time{}
		}
	}
	return v
}
