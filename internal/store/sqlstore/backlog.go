package sqlstore

import (
	"context"

	"github.com/mailtls/mailtls/internal/store"
)

// Backlog implements store.Maintenance. Its conditions are those of
// ClaimDueDomains and ClaimMessages, so what it counts is what the next
// claim would take; both read the due-time indexes.
func (db *DB) Backlog(ctx context.Context) (store.Backlog, error) {
	now := tv(db.clock())
	var b store.Backlog
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*), MIN(next_scan_at) FROM domains
		WHERE next_scan_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)`, now).Scan(&b.DueDomains, at(&b.OldestDomain))
	if err != nil {
		return store.Backlog{}, db.wrap(err)
	}
	err = db.r.QueryRowContext(ctx, `SELECT COUNT(*), MIN(next_attempt_at) FROM outbox
		WHERE delivered_at IS NULL AND abandoned_at IS NULL
		AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
		AND channel_id IN (SELECT id FROM channels WHERE disabled_at IS NULL)`, now).Scan(&b.DueMessages, at(&b.OldestMessage))
	return b, db.wrap(err)
}
