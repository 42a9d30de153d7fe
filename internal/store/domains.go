package store

import (
	"context"
	"hash/fnv"
	"time"
)

// DomainID identifies a saved domain (one account's copy of a name).
type DomainID int64

// DefaultInterval is the rescan interval of a saved domain.
const DefaultInterval = 24 * time.Hour

// Domain is a domain saved to an account, with its rescan schedule.
type Domain struct {
	ID         DomainID
	UserID     UserID
	Name       string // A-label, lower case, no trailing dot
	CreatedAt  time.Time
	Interval   time.Duration
	NextScanAt time.Time
	MutedUntil time.Time // alerts muted until then; zero: not muted
	// LeaseOwner and LeaseUntil are set while a worker holds the domain's
	// schedule lease (ClaimDueDomains).
	LeaseOwner string
	LeaseUntil time.Time
	// AlertState is what alerts remember about the domain (package
	// alert, JSON); nil before the first monitoring scan.
	AlertState []byte
	// OpenErrors and OpenWarnings count the open problems of AlertState,
	// as stored with it (Release), so a list of domains need not decode
	// every state. OpenCounted is false when they are unknown: a state
	// stored before the store kept the counts (decode AlertState then).
	OpenErrors, OpenWarnings int
	OpenCounted              bool
	// RescanRequestedAt is when "rescan now" was asked for, until the
	// scan it asked for finishes.
	RescanRequestedAt time.Time
}

// Muted reports whether alerts for the domain are muted at now.
func (d Domain) Muted(now time.Time) bool { return now.Before(d.MutedUntil) }

// NewDomain is a domain to save.
type NewDomain struct {
	UserID     UserID
	Name       string
	Interval   time.Duration // zero: DefaultInterval
	NextScanAt time.Time     // zero: NextScan(Name, Interval, now)
	// FirstScan, when set, is an anonymous scan of the same name that
	// becomes the first entry of the domain's history ("save" on a result
	// page) instead of expiring.
	FirstScan ScanID
}

// ClaimedDomain is a domain whose schedule lease the caller now holds.
type ClaimedDomain struct {
	Domain
	// RescuedFrom is the owner of an expired lease taken over (a worker
	// that died mid-scan); empty for a normal claim.
	RescuedFrom string
}

// DomainStatus is one row of the dashboard: the domain, its latest
// finished scan (nil before the first) and the grade of the one before it,
// for the trend.
type DomainStatus struct {
	Domain
	Last          *Scan
	PreviousGrade string
	HasPrevious   bool
}

// DomainSummary is what the dashboard page shows of a domain: few
// columns, read from the summary kept with each scan (an account may have
// thousands of domains).
type DomainSummary struct {
	ID         DomainID
	Name       string
	NextScanAt time.Time
	MutedUntil time.Time
	// OpenErrors, OpenWarnings and OpenCounted as in Domain; AlertState is
	// set only when the counts are unknown.
	OpenErrors, OpenWarnings int
	OpenCounted              bool
	AlertState               []byte
	// The latest finished scan (zero LastScanAt before the first) and the
	// grade of the one before it.
	LastScan      ScanID
	LastScanAt    time.Time
	LastGrade     string
	PreviousGrade string
	HasPrevious   bool
}

// Muted reports whether alerts for the domain are muted at now.
func (d DomainSummary) Muted(now time.Time) bool { return now.Before(d.MutedUntil) }

// Domains are the saved domains and their schedule.
type Domains interface {
	// AddDomain saves a domain to an account; ErrConflict when the account
	// has it already.
	AddDomain(ctx context.Context, d NewDomain) (Domain, error)
	GetDomain(ctx context.Context, id DomainID) (Domain, error)
	// FindDomain looks a name up in one account.
	FindDomain(ctx context.Context, user UserID, name string) (Domain, error)
	// ListDomains pages through the account's domains by name, after the
	// given name.
	ListDomains(ctx context.Context, user UserID, after string, limit int) ([]Domain, error)
	// DeleteDomain removes the domain with its history; ErrNotFound when
	// the account has no such domain.
	DeleteDomain(ctx context.Context, user UserID, id DomainID) error
	// SetInterval changes the rescan interval and the next run.
	SetInterval(ctx context.Context, user UserID, id DomainID, interval time.Duration, next time.Time) error
	// Mute mutes the domain's alerts until until (zero unmutes).
	Mute(ctx context.Context, user UserID, id DomainID, until time.Time) error
	// Dashboard lists every domain of the account, by name, with its latest
	// finished scan and the previous grade. It reads a summary kept with
	// each scan (one row per domain), not the history.
	Dashboard(ctx context.Context, user UserID) ([]DomainStatus, error)
	// DomainSummaries lists the same rows as Dashboard, by name, with only
	// what the dashboard page shows.
	DomainSummaries(ctx context.Context, user UserID) ([]DomainSummary, error)

	// ClaimDueDomains leases up to limit domains whose next scan is due
	// and whose lease is free or expired, earliest first, for ttl. Two
	// claimers never hold the same domain at once.
	ClaimDueDomains(ctx context.Context, owner string, limit int, ttl time.Duration) ([]ClaimedDomain, error)
	// RenewDomainLease extends a held lease; ErrLeaseLost when another
	// owner took it.
	RenewDomainLease(ctx context.Context, id DomainID, owner string, ttl time.Duration) error
	// ReleaseDomain gives the lease back and sets the next run (zero keeps
	// the current one, so the domain is due again at once); ErrLeaseLost
	// when another owner took it.
	ReleaseDomain(ctx context.Context, id DomainID, owner string, next time.Time) error
	// RequestRescan makes one of the user's domains due now ("rescan
	// now"), unless a scan of it started less than cooldown ago or a
	// request is waiting already: then it returns ErrCooldown and when a
	// request is accepted again. A request that is waiting already
	// returns its time and no error (asking twice is one request).
	RequestRescan(ctx context.Context, user UserID, id DomainID, cooldown time.Duration) (time.Time, error)
}

// NextScan is the first scheduled run of a domain strictly after t. Runs
// fall on a fixed phase per name (a hash of the name modulo the interval),
// so saved domains spread evenly over the day instead of piling up at
// midnight (Internet.nl dashboard #610), a domain keeps its time of day, and
// a scheduler that was down for days runs each domain once, at the first
// slot after it comes back, never once per missed slot.
func NextScan(name string, interval time.Duration, t time.Time) time.Time {
	interval = interval.Truncate(time.Microsecond)
	if interval <= 0 {
		interval = DefaultInterval
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	// Whole microseconds, the store's precision: a slot must survive the
	// round trip unchanged, or a domain could be due again at once.
	phase := time.Duration(h.Sum64()%uint64(interval/time.Microsecond)) * time.Microsecond
	// Slots are epoch + phase + k·interval, in UTC microseconds.
	base := t.UTC().Truncate(time.Microsecond)
	since := base.Sub(time.Unix(0, 0)) - phase
	k := since / interval
	if since < 0 && since%interval != 0 {
		k--
	}
	next := time.Unix(0, 0).UTC().Add(phase + k*interval)
	for !next.After(base) {
		next = next.Add(interval)
	}
	return next
}
