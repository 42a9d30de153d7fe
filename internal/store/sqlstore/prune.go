package sqlstore

import (
	"context"
	"fmt"

	"github.com/mailtls/mailtls/internal/store"
)

// Prune implements store.Maintenance. Each step is its own statement, so
// the writer is never held for the whole run.
func (db *DB) Prune(ctx context.Context, r store.Retention) (store.PruneStats, error) {
	r = r.WithDefaults()
	now := db.clock()
	var st store.PruneStats
	steps := []struct {
		n    *int64
		skip bool
		q    string
		args []any
	}{
		{&st.Sessions, false, "DELETE FROM sessions WHERE expires_at <= $1", []any{tv(now)}},
		{&st.OneTimeTokens, r.UsedTokens < 0,
			"DELETE FROM one_time_tokens WHERE used_at < $1 OR expires_at < $1", []any{tv(now.Add(-r.UsedTokens))}},
		{&st.Shares, false, "DELETE FROM shares WHERE expires_at <= $1", []any{tv(now)}},
		{&st.Leases, false, "DELETE FROM leases WHERE expires_at <= $1", []any{tv(now)}},
		{&st.AnonymousScans, false, "DELETE FROM scans WHERE domain_id IS NULL AND expires_at <= $1", []any{tv(now)}},
		{&st.StaleScans, r.StaleScan < 0,
			"UPDATE scans SET state = 'failed', finished_at = $1, error = 'abandoned: the worker stopped before it finished' " +
				"WHERE state IN ('queued', 'running') AND COALESCE(started_at, created_at) < $2",
			[]any{tv(now), tv(now.Add(-r.StaleScan))}},
		// Scans older than Scans go first (no point summarising them),
		// except a domain's latest scan.
		{&st.ScansDeleted, r.Scans < 0,
			`DELETE FROM scans WHERE domain_id IS NOT NULL AND state IN ('done', 'failed') AND created_at < $1
			AND id <> (SELECT k.id FROM scans k WHERE k.domain_id = scans.domain_id AND k.state IN ('done', 'failed')
				ORDER BY k.created_at DESC, k.id DESC LIMIT 1)`,
			[]any{tv(now.Add(-r.Scans))}},
		// Old scans keep their summary and findings; the report and the
		// progress events go. The latest KeepFull finished scans of each
		// domain stay whole.
		{&st.Summarised, r.FullScans < 0,
			`UPDATE scans SET stored_size = 0, pruned_at = $1
			WHERE pruned_at IS NULL AND domain_id IS NOT NULL AND created_at < $2
			AND id IN (SELECT scan_id FROM scan_reports)
			AND id NOT IN (SELECT k.id FROM scans k WHERE k.domain_id = scans.domain_id AND k.state = 'done'
				ORDER BY k.created_at DESC, k.id DESC LIMIT $3)`,
			[]any{tv(now), tv(now.Add(-r.FullScans)), r.KeepFull}},
		{new(int64), false, "DELETE FROM scan_reports WHERE scan_id IN (SELECT id FROM scans WHERE pruned_at IS NOT NULL)", nil},
		{new(int64), false, "DELETE FROM scan_events WHERE scan_id IN (SELECT id FROM scans WHERE pruned_at IS NOT NULL)", nil},
		{&st.Messages, r.Outbox < 0, "DELETE FROM outbox WHERE delivered_at < $1 OR abandoned_at < $1", []any{tv(now.Add(-r.Outbox))}},
		{&st.Deliveries, r.Outbox < 0, "DELETE FROM outbox_deliveries WHERE created_at < $1", []any{tv(now.Add(-r.Outbox))}},
		{&st.TLSRPTReports, r.TLSRPTReports < 0, "DELETE FROM tlsrpt_reports WHERE end_at < $1", []any{tv(now.Add(-r.TLSRPTReports))}},
		{&st.TLSRPTRaw, r.TLSRPTRaw < 0,
			"UPDATE tlsrpt_reports SET raw = NULL, raw_encoding = '', raw_pruned_at = $1 WHERE raw IS NOT NULL AND created_at < $2",
			[]any{tv(now), tv(now.Add(-r.TLSRPTRaw))}},
	}
	for _, s := range steps {
		if s.skip {
			continue
		}
		res, err := db.w.ExecContext(ctx, s.q, s.args...)
		if err != nil {
			return st, fmt.Errorf("sqlstore: prune: %w", err)
		}
		if *s.n, err = res.RowsAffected(); err != nil {
			return st, err
		}
	}
	return st, nil
}
