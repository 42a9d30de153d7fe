package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// contentHash identifies a report's content: what the sender reported,
// not how it was encoded or what the parser noted about it, so the same
// report through two channels is one report.
func contentHash(r *tlsrpt.Report) ([]byte, error) {
	b, err := json.Marshal(struct {
		Org, Contact, ID string
		Start, End       time.Time
		Policies         []tlsrpt.Policy
	}{r.OrganizationName, r.ContactInfo, r.ReportID, r.Start.UTC(), r.End.UTC(), r.Policies})
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(b)
	return h[:], nil
}

// AddTLSRPTReport implements store.TLSRPT.
func (db *DB) AddTLSRPTReport(ctx context.Context, n store.NewTLSRPTReport) (store.StoredTLSRPT, store.ReportOutcome, error) {
	r := n.Report
	if r == nil {
		return store.StoredTLSRPT{}, "", errors.New("sqlstore: no report")
	}
	sum, err := contentHash(r)
	if err != nil {
		return store.StoredTLSRPT{}, "", err
	}
	parsed, err := json.Marshal(r)
	if err != nil {
		return store.StoredTLSRPT{}, "", err
	}
	pz, penc, err := compress(parsed)
	if err != nil {
		return store.StoredTLSRPT{}, "", err
	}
	var raw []byte
	var renc string
	if n.Raw != nil {
		if raw, renc, err = compress(n.Raw); err != nil {
			return store.StoredTLSRPT{}, "", err
		}
	}
	state, reason := store.ReportCounted, ""
	switch {
	case n.Ignore != "":
		state, reason = store.ReportIgnored, n.Ignore
	case n.Hold:
		state, reason = store.ReportHeld, "no configured domain"
	}
	now := db.clock()
	rc := n.Receipt
	if rc.ReceivedAt.IsZero() {
		rc.ReceivedAt = now
	}
	var id store.ReportID
	outcome := store.OutcomeNew
	err = db.tx(ctx, func(tx *sql.Tx) error {
		var old store.ReportState
		err := tx.QueryRowContext(ctx, "SELECT id, state FROM tlsrpt_reports WHERE organization = $1 AND report_id = $2 AND content_sha256 = $3",
			r.OrganizationName, r.ReportID, sum).Scan(&id, (*string)(&old))
		switch {
		case err == nil:
			outcome = store.OutcomeDuplicate
			if state == store.ReportCounted && (old == store.ReportIgnored || old == store.ReportHeld) {
				// The first copy that may count makes the report count,
				// unless another report holds the key.
				res, err := tx.ExecContext(ctx, `UPDATE tlsrpt_reports SET state = 'counted', reason = '' WHERE id = $1
					AND NOT EXISTS (SELECT 1 FROM tlsrpt_reports c WHERE c.organization = $2 AND c.report_id = $3 AND c.state = 'counted')`,
					id, r.OrganizationName, r.ReportID)
				if err != nil {
					return err
				}
				if k, _ := res.RowsAffected(); k == 1 {
					outcome = store.OutcomePromoted
				}
			}
		case errors.Is(err, sql.ErrNoRows):
			if state == store.ReportCounted {
				var first store.ReportID
				err := tx.QueryRowContext(ctx, "SELECT id FROM tlsrpt_reports WHERE organization = $1 AND report_id = $2 AND state = 'counted'",
					r.OrganizationName, r.ReportID).Scan(&first)
				if err == nil {
					state, reason = store.ReportConflict, fmt.Sprintf("same organization and report-id as report %d, other content", first)
				} else if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			err = tx.QueryRowContext(ctx, `INSERT INTO tlsrpt_reports (organization, report_id, content_sha256, state, reason, start_at, end_at,
				parsed, parsed_encoding, raw, raw_encoding, raw_size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
				r.OrganizationName, r.ReportID, sum, string(state), reason, tv(r.Start), tv(r.End), pz, penc, raw, renc, len(n.Raw), tv(now)).Scan(&id)
			if err != nil {
				return err
			}
			for i, p := range r.Policies {
				if _, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_policies (report, seq, policy_type, domain, successful, failed)
					VALUES ($1, $2, $3, $4, $5, $6)`, id, i+1, string(p.Type), p.Domain, p.Successful, p.Failed); err != nil {
					return err
				}
			}
		default:
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tlsrpt_receipts (report, received_at, channel, client_ip, dkim, dkim_domain, file_name, message_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, tv(rc.ReceivedAt), rc.Channel, rc.ClientIP, rc.DKIM, rc.DKIMDomain, rc.FileName, rc.MessageID)
		return err
	})
	if err != nil {
		return store.StoredTLSRPT{}, "", db.wrap(err)
	}
	s, err := db.GetTLSRPTReport(ctx, id, false)
	return s, outcome, err
}

const tlsrptCols = "id, state, reason, parsed, parsed_encoding, raw_size, raw_pruned_at, created_at, start_at"

func (db *DB) scanTLSRPT(row interface{ Scan(...any) error }) (store.StoredTLSRPT, int64, error) {
	var s store.StoredTLSRPT
	var pz []byte
	var penc string
	var pruned time.Time
	var start int64
	if err := row.Scan(&s.ID, (*string)(&s.State), &s.Reason, &pz, &penc, &s.RawSize, at(&pruned), at(&s.CreatedAt), &start); err != nil {
		return s, 0, err
	}
	s.RawPruned = !pruned.IsZero()
	b, err := decompress(pz, penc, 0)
	if err != nil {
		return s, 0, err
	}
	s.Report = new(tlsrpt.Report)
	if err := json.Unmarshal(b, s.Report); err != nil {
		return s, 0, fmt.Errorf("sqlstore: stored report %d: %w", s.ID, err)
	}
	return s, start, nil
}

func (db *DB) receipts(ctx context.Context, id store.ReportID) ([]store.ReportReceipt, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT received_at, channel, client_ip, dkim, dkim_domain, file_name, message_id
		FROM tlsrpt_receipts WHERE report = $1 ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.ReportReceipt, error) {
		var r store.ReportReceipt
		err := row.Scan(at(&r.ReceivedAt), &r.Channel, &r.ClientIP, &r.DKIM, &r.DKIMDomain, &r.FileName, &r.MessageID)
		return r, err
	})
}

// GetTLSRPTReport implements store.TLSRPT.
func (db *DB) GetTLSRPTReport(ctx context.Context, id store.ReportID, raw bool) (store.StoredTLSRPT, error) {
	s, _, err := db.scanTLSRPT(db.r.QueryRowContext(ctx, "SELECT "+tlsrptCols+" FROM tlsrpt_reports WHERE id = $1", id))
	if err != nil {
		return s, db.wrap(err)
	}
	if s.Receipts, err = db.receipts(ctx, id); err != nil {
		return s, err
	}
	if raw && !s.RawPruned {
		var b []byte
		var enc string
		if err := db.r.QueryRowContext(ctx, "SELECT raw, raw_encoding FROM tlsrpt_reports WHERE id = $1", id).Scan(&b, &enc); err != nil {
			return s, err
		}
		if b != nil {
			if s.Raw, err = decompress(b, enc, s.RawSize); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}

// ListTLSRPTReports implements store.TLSRPT.
func (db *DB) ListTLSRPTReports(ctx context.Context, q store.TLSRPTQuery) ([]store.StoredTLSRPT, store.Cursor, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Domain != "" {
		where = append(where, "id IN (SELECT report FROM tlsrpt_policies WHERE domain = "+arg(q.Domain)+")")
	}
	if !q.From.IsZero() {
		where = append(where, "end_at > "+arg(tv(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "start_at < "+arg(tv(q.To)))
	}
	if len(q.States) > 0 {
		var in []string
		for _, s := range q.States {
			in = append(in, arg(string(s)))
		}
		where = append(where, "state IN ("+strings.Join(in, ", ")+")")
	}
	if q.After != "" {
		start, id, err := parseScanCursor(q.After)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(start_at > "+arg(start)+" OR (start_at = "+arg(start)+" AND id > "+arg(id)+"))")
	}
	query := "SELECT " + tlsrptCols + " FROM tlsrpt_reports"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY start_at, id LIMIT " + arg(q.Limit+1)
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	var out []store.StoredTLSRPT
	var starts []int64
	defer rows.Close()
	for rows.Next() {
		s, start, err := db.scanTLSRPT(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, s)
		starts = append(starts, start)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	rows.Close()
	for i := range out {
		if out[i].Receipts, err = db.receipts(ctx, out[i].ID); err != nil {
			return nil, "", err
		}
	}
	if len(out) <= q.Limit {
		return out, "", nil
	}
	out = out[:q.Limit]
	last := out[q.Limit-1]
	return out, store.Cursor(fmt.Sprintf("%d.%d", starts[q.Limit-1], last.ID)), nil
}

// DeleteTLSRPTDomain implements store.TLSRPT.
func (db *DB) DeleteTLSRPTDomain(ctx context.Context, domain string) (int, error) {
	res, err := db.w.ExecContext(ctx, "DELETE FROM tlsrpt_reports WHERE id IN (SELECT report FROM tlsrpt_policies WHERE domain = $1)", domain)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
