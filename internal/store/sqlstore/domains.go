package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

const domainCols = "id, user_id, name, created_at, interval_us, next_scan_at, muted_until, lease_owner, lease_until, alert_state, " +
	"open_errors, open_warnings, rescan_requested_at"

func domainDest(d *store.Domain, interval *int64) []any {
	return []any{&d.ID, &d.UserID, &d.Name, at(&d.CreatedAt), interval, at(&d.NextScanAt), at(&d.MutedUntil), nstr(&d.LeaseOwner), at(&d.LeaseUntil),
		&d.AlertState, countCol{&d.OpenErrors, &d.OpenCounted}, countCol{&d.OpenWarnings, &d.OpenCounted}, at(&d.RescanRequestedAt)}
}

// countCol scans an open-problem count; NULL (not counted) clears ok.
type countCol struct {
	n  *int
	ok *bool
}

func (c countCol) Scan(v any) error {
	*c.ok = v != nil
	return intCol{c.n}.Scan(v)
}

// finishDomain completes a scanned row: with no alert state there is
// nothing open, so the counts are known.
func finishDomain(d *store.Domain, interval int64) {
	d.Interval = time.Duration(interval) * time.Microsecond
	if d.AlertState == nil {
		d.OpenCounted = true
	}
}

func scanDomain(row interface{ Scan(...any) error }) (store.Domain, error) {
	var d store.Domain
	var iv int64
	err := row.Scan(domainDest(&d, &iv)...)
	finishDomain(&d, iv)
	return d, err
}

// AddDomain implements store.Domains.
func (db *DB) AddDomain(ctx context.Context, n store.NewDomain) (store.Domain, error) {
	if n.Name == "" {
		return store.Domain{}, errors.New("sqlstore: empty domain name")
	}
	now := db.clock()
	if n.Interval <= 0 {
		n.Interval = store.DefaultInterval
	}
	if n.NextScanAt.IsZero() {
		n.NextScanAt = store.NextScan(n.Name, n.Interval, now)
	}
	var d store.Domain
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		d, err = scanDomain(tx.QueryRowContext(ctx, `INSERT INTO domains (user_id, name, created_at, interval_us, next_scan_at)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+domainCols,
			n.UserID, n.Name, tv(now), n.Interval.Microseconds(), tv(n.NextScanAt)))
		if err != nil || n.FirstScan == 0 {
			return err
		}
		// Adopt the anonymous scan the user saved from.
		res, err := tx.ExecContext(ctx, `UPDATE scans SET domain_id = $1, user_id = $2, expires_at = NULL
			WHERE id = $3 AND domain_id IS NULL AND name = $4`, d.ID, n.UserID, n.FirstScan, n.Name)
		if err := affected(res, err, fmt.Errorf("%w: no anonymous scan %d of %s", store.ErrNotFound, n.FirstScan, n.Name)); err != nil {
			return err
		}
		return summarise(ctx, tx, d.ID)
	})
	return d, db.wrap(err)
}

// GetDomain implements store.Domains.
func (db *DB) GetDomain(ctx context.Context, id store.DomainID) (store.Domain, error) {
	d, err := scanDomain(db.r.QueryRowContext(ctx, "SELECT "+domainCols+" FROM domains WHERE id = $1", id))
	return d, db.wrap(err)
}

// FindDomain implements store.Domains.
func (db *DB) FindDomain(ctx context.Context, user store.UserID, name string) (store.Domain, error) {
	d, err := scanDomain(db.r.QueryRowContext(ctx, "SELECT "+domainCols+" FROM domains WHERE user_id = $1 AND name = $2", user, name))
	return d, db.wrap(err)
}

// ListDomains implements store.Domains.
func (db *DB) ListDomains(ctx context.Context, user store.UserID, after string, limit int) ([]store.Domain, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+domainCols+" FROM domains WHERE user_id = $1 AND name > $2 ORDER BY name LIMIT $3",
		user, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDomain)
}

// DeleteDomain implements store.Domains.
func (db *DB) DeleteDomain(ctx context.Context, user store.UserID, id store.DomainID) error {
	res, err := db.w.ExecContext(ctx, "DELETE FROM domains WHERE id = $1 AND user_id = $2", id, user)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// SetInterval implements store.Domains.
func (db *DB) SetInterval(ctx context.Context, user store.UserID, id store.DomainID, interval time.Duration, next time.Time) error {
	if interval <= 0 {
		return errors.New("sqlstore: interval must be positive")
	}
	res, err := db.w.ExecContext(ctx, "UPDATE domains SET interval_us = $3, next_scan_at = $4 WHERE id = $1 AND user_id = $2",
		id, user, interval.Microseconds(), tv(next))
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// Mute implements store.Domains.
func (db *DB) Mute(ctx context.Context, user store.UserID, id store.DomainID, until time.Time) error {
	res, err := db.w.ExecContext(ctx, "UPDATE domains SET muted_until = $3 WHERE id = $1 AND user_id = $2", id, user, tv(until))
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// dashboardFrom joins an account's domains (d) to their latest two
// finished scans (s, p) by the ids of the summary, by name.
const dashboardFrom = `
	FROM domains d
	LEFT JOIN scans s ON s.id = d.last_scan_id
	LEFT JOIN scans p ON p.id = d.prev_scan_id
	WHERE d.user_id = $1 ORDER BY d.name`

// Dashboard implements store.Domains: one row per domain, its latest two
// finished scans found by primary key from the summary kept with each
// scan (summarise), never by searching the history.
func (db *DB) Dashboard(ctx context.Context, user store.UserID) ([]store.DomainStatus, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+colsOf("d", domainCols)+", "+colsOf("s", scanColNames)+", p.id, p.grade"+dashboardFrom, user)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.DomainStatus, error) {
		var st store.DomainStatus
		var iv int64
		var s store.Scan
		var sha []byte
		var prev store.ScanID
		dest := append(domainDest(&st.Domain, &iv), scanDest(&s, &sha)...)
		dest = append(dest, nidc(&prev), nstr(&st.PreviousGrade))
		if err := row.Scan(dest...); err != nil {
			return st, err
		}
		finishDomain(&st.Domain, iv)
		if s.ID != 0 {
			finishScan(&s, sha)
			st.Last = &s
		}
		st.HasPrevious = prev != 0
		return st, nil
	})
}

// DomainSummaries implements store.Domains: Dashboard's rows with a third
// of its columns, which is most of its cost.
func (db *DB) DomainSummaries(ctx context.Context, user store.UserID) ([]store.DomainSummary, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT d.id, d.name, d.next_scan_at, d.muted_until, d.open_errors, d.open_warnings,
		CASE WHEN d.open_errors IS NULL THEN d.alert_state END, s.id, s.created_at, s.grade, p.id, p.grade`+dashboardFrom, user)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.DomainSummary, error) {
		var d store.DomainSummary
		var prev store.ScanID
		err := row.Scan(&d.ID, &d.Name, at(&d.NextScanAt), at(&d.MutedUntil), countCol{&d.OpenErrors, &d.OpenCounted}, countCol{&d.OpenWarnings, &d.OpenCounted},
			&d.AlertState, nidc(&d.LastScan), at(&d.LastScanAt), nstr(&d.LastGrade), nidc(&prev), nstr(&d.PreviousGrade))
		if d.AlertState == nil {
			d.OpenCounted = true
		}
		d.HasPrevious = prev != 0
		return d, err
	})
}

// summarise sets a domain's dashboard summary (schema version 6): its
// latest two finished scans, in the order ListScans gives. It runs in the
// transaction that changes them (a scan finished, an anonymous scan
// adopted); retention only deletes scans older than those it keeps, which
// the dashboard's LEFT JOIN then no longer finds.
func summarise(ctx context.Context, e execer, id store.DomainID) error {
	// Take the row's lock first, so that the summary is read by a later
	// statement: under PostgreSQL's READ COMMITTED it then sees a scan that
	// another transaction finished meanwhile (a no-op on SQLite, whose
	// writer is single).
	if _, err := e.ExecContext(ctx, "UPDATE domains SET last_scan_id = last_scan_id WHERE id = $1", id); err != nil {
		return err
	}
	const latest = "SELECT s.id FROM scans s WHERE s.domain_id = domains.id AND s.state = 'done' ORDER BY s.created_at DESC, s.id DESC LIMIT 1"
	_, err := e.ExecContext(ctx, "UPDATE domains SET last_scan_id = ("+latest+"), prev_scan_id = ("+latest+" OFFSET 1) WHERE id = $1", id)
	return err
}

// ClaimDueDomains implements store.Domains. The selection and the update
// are one statement; SQLite's single writer serialises claimers, and
// PostgreSQL's dialect adds FOR UPDATE SKIP LOCKED to the selection.
func (db *DB) ClaimDueDomains(ctx context.Context, owner string, limit int, ttl time.Duration) ([]store.ClaimedDomain, error) {
	if owner == "" {
		return nil, errors.New("sqlstore: empty lease owner")
	}
	now := db.clock()
	rows, err := db.w.QueryContext(ctx, `UPDATE domains SET rescued_from = lease_owner, lease_owner = $1, lease_until = $2
		WHERE id IN (SELECT id FROM domains WHERE next_scan_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)
			ORDER BY next_scan_at, id LIMIT $4`+db.d.SkipLocked+`)
		RETURNING `+domainCols+", rescued_from", owner, tv(now.Add(ttl)), tv(now), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.ClaimedDomain, error) {
		var c store.ClaimedDomain
		var iv int64
		err := row.Scan(append(domainDest(&c.Domain, &iv), nstr(&c.RescuedFrom))...)
		finishDomain(&c.Domain, iv)
		return c, err
	})
}

// RenewDomainLease implements store.Domains.
func (db *DB) RenewDomainLease(ctx context.Context, id store.DomainID, owner string, ttl time.Duration) error {
	res, err := db.w.ExecContext(ctx, "UPDATE domains SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
		id, owner, tv(db.clock().Add(ttl)))
	return affected(res, err, store.ErrLeaseLost)
}

// ReleaseDomain implements store.Domains.
func (db *DB) ReleaseDomain(ctx context.Context, id store.DomainID, owner string, next time.Time) error {
	return releaseDomain(ctx, db.w, id, owner, next, nil, 0, 0)
}

// RequestRescan implements store.Domains.
func (db *DB) RequestRescan(ctx context.Context, user store.UserID, id store.DomainID, cooldown time.Duration) (time.Time, error) {
	now := db.clock()
	var when time.Time
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var requested, lastScan time.Time
		err := tx.QueryRowContext(ctx, `SELECT d.rescan_requested_at, (SELECT MAX(created_at) FROM scans WHERE domain_id = d.id)
			FROM domains d WHERE d.id = $1 AND d.user_id = $2`, id, user).Scan(at(&requested), at(&lastScan))
		if err != nil {
			return err
		}
		if !requested.IsZero() {
			when = requested // waiting already: one request
			return nil
		}
		if next := lastScan.Add(cooldown); !lastScan.IsZero() && now.Before(next) {
			when = next
			return store.ErrCooldown
		}
		when = now
		_, err = tx.ExecContext(ctx, `UPDATE domains SET rescan_requested_at = $2,
			next_scan_at = CASE WHEN next_scan_at > $2 THEN $2 ELSE next_scan_at END WHERE id = $1`, id, tv(now))
		return err
	})
	return store.UTC(when), db.wrap(err)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// releaseDomain gives the lease back, sets the next run and, when state is
// not nil, the alert state with its counts of open problems. A finished run
// answers any rescan request.
func releaseDomain(ctx context.Context, e execer, id store.DomainID, owner string, next time.Time, state []byte, openErrors, openWarnings int) error {
	var errs, warns any
	if state != nil {
		errs, warns = openErrors, openWarnings
	}
	res, err := e.ExecContext(ctx, `UPDATE domains SET lease_owner = NULL, lease_until = NULL, rescued_from = NULL,
		next_scan_at = COALESCE($3, next_scan_at), alert_state = COALESCE($4, alert_state),
		open_errors = COALESCE($5, open_errors), open_warnings = COALESCE($6, open_warnings), rescan_requested_at = NULL
		WHERE id = $1 AND lease_owner = $2`, id, owner, tv(next), state, errs, warns)
	return affected(res, err, store.ErrLeaseLost)
}
