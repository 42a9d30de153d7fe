// Package store is what `mailtls serve` keeps: accounts, sessions, API
// tokens, saved domains and their schedule, scans with their history,
// progress events, leases, the alert outbox, share links, alert channels and
// TLS-RPT reports (RFC 8460), and the policy ids and MX sets of the policy
// host.
//
// The package holds the domain types and small interfaces named by use;
// internal/store/sqlstore implements them on SQLite (and, with a dialect,
// PostgreSQL), and internal/store/storetest is the conformance suite every
// implementation passes unchanged.
//
// Contracts shared by every method:
//
//   - ctx is first and bounds the call; implementations are safe for
//     concurrent use.
//   - A lookup of a missing or expired row returns an error matching
//     ErrNotFound (errors.Is); a uniqueness violation matches ErrConflict;
//     an operation under a lease that is no longer held matches ErrLeaseLost.
//   - Time comes from the store's injected clock (Options.Now), never from
//     time.Now directly, so expiry and scheduling run on a test clock. Times
//     are stored as UTC with microsecond precision and come back in UTC.
//   - Deleting a user deletes every row the user owns (sessions, tokens,
//     one-time tokens, domains, their scans, findings, events and shares,
//     channels and their outbox and delivery log).
package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers branch on.
var (
	ErrNotFound  = errors.New("store: not found")
	ErrConflict  = errors.New("store: already exists")
	ErrLeaseLost = errors.New("store: lease not held")
	// ErrExpired and ErrUsed say why a one-time token was refused.
	ErrExpired = errors.New("store: expired")
	ErrUsed    = errors.New("store: already used")
	// ErrPruned: the scan is kept as a summary; its full report was removed
	// by retention (see Retention).
	ErrPruned = errors.New("store: report pruned by retention")
	// ErrCooldown: a rescan was asked for too soon after the last one.
	ErrCooldown = errors.New("store: a scan ran or was requested moments ago")
)

// Clock returns the current time; stores take it as Options.Now.
type Clock func() time.Time

// Store is everything the server keeps.
type Store interface {
	Users
	Sessions
	Tokens
	OneTimeTokens
	Domains
	Verifications
	Scans
	ScanEvents
	Leases
	Outbox
	Shares
	Channels
	TLSRPT
	HostPolicies
	Maintenance
}

// Maintenance is what the janitor and the admin commands need.
type Maintenance interface {
	// Prune applies retention: expired sessions, shares, one-time tokens and
	// anonymous scans are deleted, old scans are reduced to summaries and
	// then deleted, old outbox rows and TLS-RPT data are removed.
	Prune(ctx context.Context, r Retention) (PruneStats, error)
	// Backup writes a consistent copy of the database to path while others
	// keep reading and writing; path must not exist.
	Backup(ctx context.Context, path string) error
	// SchemaVersion is the applied migration version.
	SchemaVersion(ctx context.Context) (int64, error)
	// Backlog tells what waits in the shared queues at now (health and
	// metrics of the worker).
	Backlog(ctx context.Context) (Backlog, error)
	Close() error
}

// Backlog is what waits for a worker: domains whose scan is due and that
// no live lease holds (ClaimDueDomains would take them), and outbox
// messages due for an attempt on an enabled channel and not leased
// (ClaimMessages would take them), each with the due time of the oldest
// (zero when none waits). How late that one is, is the queue's lag.
type Backlog struct {
	DueDomains    int
	OldestDomain  time.Time
	DueMessages   int
	OldestMessage time.Time
}

// UTC returns t in UTC, truncated to the store's precision (microseconds),
// which is what a round trip through any store gives back.
func UTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
