package sqlstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
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
	var outcome store.ReportOutcome
	add := func(tx *sql.Tx, state store.ReportState, reason string) error {
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
					if err := insertDays(ctx, tx, id, r); err != nil {
						return err
					}
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
			if state == store.ReportCounted {
				if err := insertDays(ctx, tx, id, r); err != nil {
					return err
				}
			}
		default:
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tlsrpt_receipts (report, received_at, channel, client_ip, dkim, dkim_domain, file_name, message_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, tv(rc.ReceivedAt), rc.Channel, rc.ClientIP, rc.DKIM, rc.DKIMDomain, rc.FileName, rc.MessageID)
		return err
	}
	// Copies arriving at once at two instances (PostgreSQL) can both find
	// no report and both insert one: the later insert fails on the unique
	// key, and its second attempt finds the first copy's committed row.
	for attempt := 1; ; attempt++ {
		outcome = store.OutcomeNew
		err = db.tx(ctx, func(tx *sql.Tx) error { return add(tx, state, reason) })
		if err == nil || attempt == 3 || db.d.IsUnique == nil || !db.d.IsUnique(err) {
			break
		}
	}
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

// tlsrptWhere is the filter of q (domain, range, states) on
// tlsrpt_reports; arg binds a value and returns its placeholder.
func tlsrptWhere(q store.TLSRPTQuery, arg func(any) string) []string {
	var where []string
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
	return where
}

// ListTLSRPTReports implements store.TLSRPT.
func (db *DB) ListTLSRPTReports(ctx context.Context, q store.TLSRPTQuery) ([]store.StoredTLSRPT, store.Cursor, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := tlsrptWhere(q, arg)
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
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM tlsrpt_reports WHERE id IN (SELECT report FROM tlsrpt_policies WHERE domain = $1)", domain)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM tlsrpt_overrides WHERE domain = $1", domain)
		return err
	})
	return int(n), err
}

// RecordPromoteOverride implements store.TLSRPT.
func (db *DB) RecordPromoteOverride(ctx context.Context, o store.PromoteOverride) error {
	if o.At.IsZero() {
		o.At = db.clock()
	}
	_, err := db.w.ExecContext(ctx, "INSERT INTO tlsrpt_overrides (domain, policy_id, status, reasons, at) VALUES ($1, $2, $3, $4, $5)",
		o.Domain, o.PolicyID, o.Status, strings.Join(o.Reasons, "\n"), tv(o.At))
	return err
}

// ListPromoteOverrides implements store.TLSRPT.
func (db *DB) ListPromoteOverrides(ctx context.Context, domain string) ([]store.PromoteOverride, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT domain, policy_id, status, reasons, at FROM tlsrpt_overrides WHERE domain = $1 ORDER BY at DESC, id DESC", domain)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.PromoteOverride, error) {
		var o store.PromoteOverride
		var reasons string
		err := row.Scan(&o.Domain, &o.PolicyID, &o.Status, &reasons, at(&o.At))
		if reasons != "" {
			o.Reasons = strings.Split(reasons, "\n")
		}
		return o, err
	})
}

// insertDays stores the figures of a report that counts, per domain, day
// and policy type (tlsrptagg.ReportRows), which TLSRPTSummary and
// TLSRPTSums sum. Only counted reports have day rows (schema version 5):
// a report gets them when it comes to count, and a counted report never
// stops counting.
func insertDays(ctx context.Context, tx *sql.Tx, id store.ReportID, r *tlsrpt.Report) error {
	rows, doms := tlsrptagg.ReportRows(r)
	// first_row marks a report's first day (per domain and policy type;
	// per domain in tlsrpt_day_domains): TLSRPTSums counts distinct
	// reports with it. ReportRows gives a report's days consecutive.
	type typeKey struct {
		domain string
		typ    tlsrpt.PolicyType
	}
	firstDay := map[typeKey]time.Time{}
	for _, row := range rows {
		k := typeKey{row.Domain, row.Type}
		if d, ok := firstDay[k]; !ok || row.Day.Before(d) {
			firstDay[k] = row.Day
		}
	}
	firstDom := map[string]time.Time{}
	for _, d := range doms {
		if f, ok := firstDom[d.Domain]; !ok || d.Day.Before(f) {
			firstDom[d.Domain] = d.Day
		}
	}
	flag := func(first bool) int {
		if first {
			return 1
		}
		return 0
	}
	for _, row := range rows {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_days (report, domain, day, policy_type, organization, successful, failed, details_failed, mx_sets, first_row)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, id, row.Domain, tv(row.Day), string(row.Type), row.Organization, row.Successful, row.Failed, row.DetailsFailed,
			strings.Join(row.MXSets, "\n"), flag(firstDay[typeKey{row.Domain, row.Type}].Equal(row.Day))); err != nil {
			return err
		}
		if len(row.Failures) == 0 {
			continue
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO tlsrpt_day_failures (report, domain, day, policy_type, result_type, mx, sending_ip, receiving_ip, reason, count)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`)
		if err != nil {
			return err
		}
		for _, f := range row.Failures {
			if _, err := stmt.ExecContext(ctx, id, row.Domain, tv(row.Day), string(row.Type), string(f.ResultType), f.MX, f.SendingIP, f.ReceivingIP, f.Reason, f.Count); err != nil {
				stmt.Close()
				return err
			}
		}
		stmt.Close()
	}
	for _, d := range doms {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tlsrpt_day_domains (report, domain, day, organization, sessions, failed, first_row) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, d.Domain, tv(d.Day), d.Organization, d.Sessions, d.Failed, flag(firstDom[d.Domain].Equal(d.Day))); err != nil {
			return err
		}
	}
	return nil
}

// parsedReport reads a stored report's parsed form.
func parsedReport(ctx context.Context, tx *sql.Tx, id store.ReportID) (*tlsrpt.Report, error) {
	var pz []byte
	var enc string
	if err := tx.QueryRowContext(ctx, "SELECT parsed, parsed_encoding FROM tlsrpt_reports WHERE id = $1", id).Scan(&pz, &enc); err != nil {
		return nil, err
	}
	b, err := decompress(pz, enc, 0)
	if err != nil {
		return nil, err
	}
	r := new(tlsrpt.Report)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("sqlstore: stored report %d: %w", id, err)
	}
	return r, nil
}

// backfillDays gives counted reports stored before schema version 4
// their day rows (every report has at least one policy, so at least one
// row). It runs when the store opens, one transaction per batch.
func (db *DB) backfillDays(ctx context.Context) (int, error) {
	done := 0
	var after store.ReportID
	for {
		rows, err := db.w.QueryContext(ctx, `SELECT id, parsed, parsed_encoding FROM tlsrpt_reports r
			WHERE id > $1 AND state = 'counted' AND NOT EXISTS (SELECT 1 FROM tlsrpt_days d WHERE d.report = r.id) ORDER BY id LIMIT 200`, after)
		if err != nil {
			return done, err
		}
		type pending struct {
			id  store.ReportID
			rep *tlsrpt.Report
		}
		var batch []pending
		for rows.Next() {
			var p pending
			var pz []byte
			var enc string
			if err := rows.Scan(&p.id, &pz, &enc); err != nil {
				rows.Close()
				return done, err
			}
			b, err := decompress(pz, enc, 0)
			if err == nil {
				p.rep = new(tlsrpt.Report)
				err = json.Unmarshal(b, p.rep)
			}
			if err != nil {
				rows.Close()
				return done, fmt.Errorf("sqlstore: stored report %d: %w", p.id, err)
			}
			batch = append(batch, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return done, err
		}
		if len(batch) == 0 {
			return done, nil
		}
		after = batch[len(batch)-1].id
		err = db.tx(ctx, func(tx *sql.Tx) error {
			for _, p := range batch {
				if err := insertDays(ctx, tx, p.id, p.rep); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return done, fmt.Errorf("sqlstore: TLS-RPT day rows: %w", err)
		}
		done += len(batch)
	}
}

// TLSRPTSummary implements store.TLSRPT: the day rows (only counted
// reports have them), merged as tlsrptagg.Aggregate would merge the
// reports.
func (db *DB) TLSRPTSummary(ctx context.Context, domain string, from, to time.Time) (*tlsrptagg.Summary, error) {
	where := ""
	args := []any{domain}
	if !from.IsZero() {
		args = append(args, tv(tlsrptagg.Day(from)))
		where += fmt.Sprintf(" AND d.day >= $%d", len(args))
	}
	if !to.IsZero() {
		args = append(args, tv(to))
		where += fmt.Sprintf(" AND d.day < $%d", len(args))
	}
	type key struct {
		report store.ReportID
		day    int64
		typ    string
	}
	var rows []tlsrptagg.Row
	index := map[key]int{}
	q, err := db.r.QueryContext(ctx, `SELECT d.report, d.day, d.policy_type, d.successful, d.failed, d.details_failed, d.mx_sets,
		d.organization, r.report_id, r.start_at FROM tlsrpt_days d JOIN tlsrpt_reports r ON r.id = d.report
		WHERE d.domain = $1`+where, args...)
	if err != nil {
		return nil, err
	}
	for q.Next() {
		var k key
		var row tlsrptagg.Row
		var mx string
		var start int64
		var ref tlsrptagg.Ref
		if err := q.Scan(&k.report, &k.day, &k.typ, &row.Successful, &row.Failed, &row.DetailsFailed, &mx,
			&ref.Organization, &ref.ReportID, &start); err != nil {
			q.Close()
			return nil, err
		}
		row.Domain, row.Day, row.Type, row.Organization = domain, time.UnixMicro(k.day).UTC(), tlsrpt.PolicyType(k.typ), ref.Organization
		ref.Day = tlsrptagg.Day(time.UnixMicro(start))
		row.Reports = []tlsrptagg.Ref{ref}
		if row.Type == tlsrpt.PolicySTS {
			row.MXSets = strings.Split(mx, "\n")
		}
		index[k] = len(rows)
		rows = append(rows, row)
	}
	q.Close()
	if err := q.Err(); err != nil {
		return nil, err
	}
	q, err = db.r.QueryContext(ctx, `SELECT d.report, d.day, d.policy_type, d.result_type, d.mx, d.sending_ip, d.receiving_ip, d.reason, d.count
		FROM tlsrpt_day_failures d WHERE d.domain = $1`+where, args...)
	if err != nil {
		return nil, err
	}
	for q.Next() {
		var k key
		var f tlsrptagg.Failure
		if err := q.Scan(&k.report, &k.day, &k.typ, (*string)(&f.ResultType), &f.MX, &f.SendingIP, &f.ReceivingIP, &f.Reason, &f.Count); err != nil {
			q.Close()
			return nil, err
		}
		if i, ok := index[k]; ok {
			rows[i].Failures = append(rows[i].Failures, f)
		}
	}
	q.Close()
	if err := q.Err(); err != nil {
		return nil, err
	}
	q, err = db.r.QueryContext(ctx, `SELECT d.day, d.organization, d.sessions, d.failed
		FROM tlsrpt_day_domains d WHERE d.domain = $1`+where, args...)
	if err != nil {
		return nil, err
	}
	doms, err := collect(q, func(row interface{ Scan(...any) error }) (tlsrptagg.DomainRow, error) {
		d := tlsrptagg.DomainRow{Domain: domain}
		err := row.Scan(at(&d.Day), &d.Organization, &d.Sessions, &d.Failed)
		return d, err
	})
	if err != nil {
		return nil, err
	}
	return tlsrptagg.Merge(rows, doms), nil
}

// CountTLSRPTReports implements store.TLSRPT.
func (db *DB) CountTLSRPTReports(ctx context.Context, q store.TLSRPTQuery) (map[store.ReportState]int, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := tlsrptWhere(q, arg)
	query := "SELECT state, COUNT(*) FROM tlsrpt_reports"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := db.r.QueryContext(ctx, query+" GROUP BY state", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[store.ReportState]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[store.ReportState(s)] = n
	}
	return out, rows.Err()
}

// ReleaseHeldTLSRPT implements store.TLSRPT.
func (db *DB) ReleaseHeldTLSRPT(ctx context.Context, domain string) (int, error) {
	n := 0
	err := db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, organization, report_id FROM tlsrpt_reports WHERE state = 'held'
			AND id IN (SELECT report FROM tlsrpt_policies WHERE domain = $1) ORDER BY id`, domain)
		if err != nil {
			return err
		}
		type held struct {
			id       store.ReportID
			org, rid string
		}
		list, err := collect(rows, func(row interface{ Scan(...any) error }) (held, error) {
			var h held
			return h, row.Scan(&h.id, &h.org, &h.rid)
		})
		if err != nil {
			return err
		}
		for _, h := range list {
			var first store.ReportID
			err := tx.QueryRowContext(ctx, "SELECT id FROM tlsrpt_reports WHERE organization = $1 AND report_id = $2 AND state = 'counted'",
				h.org, h.rid).Scan(&first)
			switch {
			case err == nil:
				_, err = tx.ExecContext(ctx, "UPDATE tlsrpt_reports SET state = 'conflict', reason = $1 WHERE id = $2",
					fmt.Sprintf("same organization and report-id as report %d, other content", first), h.id)
			case errors.Is(err, sql.ErrNoRows):
				if _, err = tx.ExecContext(ctx, "UPDATE tlsrpt_reports SET state = 'counted', reason = '' WHERE id = $1", h.id); err != nil {
					return err
				}
				var rep *tlsrpt.Report
				if rep, err = parsedReport(ctx, tx, h.id); err == nil {
					err = insertDays(ctx, tx, h.id, rep)
				}
				n++
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, db.wrap(err)
}

// longWindow: from this many days on, TLSRPTSums reads a domain's day
// rows in the order of each sum's GROUP BY (indexes of schema version 7
// that lead with the domain alone), which costs about a tenth of sorting
// a row but reads the rows of every day kept, not only the window's.
// Below it, the window's rows are found by day and sorted. With reports
// kept for the default two years, the two cost about the same around
// three months.
const longWindow = 92 * 24 * time.Hour

// TLSRPTSums implements store.TLSRPT: the day rows summed by the
// database (GROUP BY), so a year of daily reports from many reporters is
// a few small results. Every figure stays per policy type: sts and tlsa
// are never added. Only counted reports have day rows, so conflicts,
// ignored and held reports stay out without a look at the report. The
// four sums are independent and run at once on the reader pool (like any
// set of reads outside a transaction, a report stored meanwhile may be in
// some and not in others).
//
// Distinct reports are counted without COUNT(DISTINCT): a report's day
// rows are consecutive days, so each report with rows in the window has
// exactly one row there that is its first (first_row) or on the window's
// first day.
func (db *DB) TLSRPTSums(ctx context.Context, domain string, from, to time.Time) (*tlsrptagg.Sums, error) {
	where := " WHERE d.domain = $1"
	args := []any{domain}
	counts := "CASE WHEN d.first_row = 1 THEN 1 ELSE 0 END"
	if !from.IsZero() {
		args = append(args, tv(tlsrptagg.Day(from)))
		where += fmt.Sprintf(" AND d.day >= $%d", len(args))
		counts = fmt.Sprintf("CASE WHEN d.first_row = 1 OR d.day = $%d THEN 1 ELSE 0 END", len(args))
	}
	if !to.IsZero() {
		args = append(args, tv(to))
		where += fmt.Sprintf(" AND d.day < $%d", len(args))
	}
	// by names the index that gives a long window's rows in GROUP BY order.
	by := func(index string) string {
		if db.d.IndexedBy == nil || !from.IsZero() && !to.IsZero() && to.Sub(from) < longWindow {
			return ""
		}
		return db.d.IndexedBy(index)
	}
	type day struct {
		typ         string
		day         time.Time
		succ, f, df int64
	}
	type org struct {
		typ, org string
		o        tlsrptagg.OrgTotals
		reports  int
	}
	type failure struct {
		typ, result, mx, ip string
		n                   int64
	}
	var days []day
	var orgs []org
	var failures []failure
	var reporters []tlsrptagg.ReporterSums
	// CAST: SUM of a BIGINT is NUMERIC in PostgreSQL.
	queries := []struct {
		sql  string
		scan func(row interface{ Scan(...any) error }) error
	}{{
		// In the order of tlsrpt_days_by_day (domain, day, type): no sort.
		`SELECT d.policy_type, d.day, CAST(SUM(d.successful) AS BIGINT), CAST(SUM(d.failed) AS BIGINT), CAST(SUM(d.details_failed) AS BIGINT)
		FROM tlsrpt_days d` + where + ` GROUP BY d.day, d.policy_type ORDER BY d.day, d.policy_type`,
		func(row interface{ Scan(...any) error }) error {
			var x day
			days = append(days, x)
			p := &days[len(days)-1]
			return row.Scan(&p.typ, at(&p.day), &p.succ, &p.f, &p.df)
		},
	}, {
		// A report is of one organisation: the distinct reports per
		// organisation add up to the distinct reports of the type.
		`SELECT d.policy_type, d.organization, CAST(SUM(d.successful) AS BIGINT), CAST(SUM(d.failed) AS BIGINT), CAST(SUM(` + counts + `) AS BIGINT)
		FROM tlsrpt_days d` + by("tlsrpt_days_by_org") + where + ` GROUP BY d.policy_type, d.organization`,
		func(row interface{ Scan(...any) error }) error {
			var x org
			err := row.Scan(&x.typ, &x.org, &x.o.Successful, &x.o.Failed, &x.reports)
			orgs = append(orgs, x)
			return err
		},
	}, {
		`SELECT d.policy_type, d.result_type, d.mx, d.sending_ip, CAST(SUM(d.count) AS BIGINT)
		FROM tlsrpt_day_failures d` + by("tlsrpt_day_failures_by_kind") + where + ` GROUP BY d.policy_type, d.result_type, d.mx, d.sending_ip`,
		func(row interface{ Scan(...any) error }) error {
			var x failure
			err := row.Scan(&x.typ, &x.result, &x.mx, &x.ip, &x.n)
			failures = append(failures, x)
			return err
		},
	}, {
		// The per-domain figure, per reporter: each session once
		// whatever the policy type.
		`SELECT d.organization, CAST(SUM(` + counts + `) AS BIGINT), CAST(SUM(d.sessions) AS BIGINT), CAST(SUM(d.failed) AS BIGINT), MIN(d.day), MAX(d.day)
		FROM tlsrpt_day_domains d` + by("tlsrpt_day_domains_by_org") + where + ` GROUP BY d.organization ORDER BY d.organization`,
		func(row interface{ Scan(...any) error }) error {
			var rp tlsrptagg.ReporterSums
			err := row.Scan(&rp.Organization, &rp.Reports, &rp.Sessions, &rp.Failed, at(&rp.FirstDay), at(&rp.LastDay))
			reporters = append(reporters, rp)
			return err
		},
	}}
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { errs[i] = db.each(ctx, q.sql, args, q.scan) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	out := &tlsrptagg.Sums{Types: []tlsrptagg.TypeSums{}, Reporters: []tlsrptagg.ReporterSums{}}
	types := map[tlsrpt.PolicyType]int{}
	sums := func(typ string) *tlsrptagg.TypeSums {
		t := tlsrpt.PolicyType(typ)
		i, ok := types[t]
		if !ok {
			i = len(out.Types)
			types[t] = i
			out.Types = append(out.Types, tlsrptagg.NewTypeSums(t))
		}
		return &out.Types[i]
	}
	for _, d := range days {
		sums(d.typ).AddDay(d.day, d.succ, d.f, d.df)
	}
	for _, o := range orgs {
		t := sums(o.typ)
		t.ByOrganization[o.org] = o.o
		t.Reports += o.reports
	}
	for _, f := range failures {
		sums(f.typ).AddFailures(tlsrpt.ResultType(f.result), f.mx, f.ip, f.n)
	}
	for _, rp := range reporters {
		out.Reporters = append(out.Reporters, rp)
		out.Sessions += rp.Sessions
		out.Failed += rp.Failed
		out.Reports += rp.Reports
	}
	slices.SortFunc(out.Types, func(a, b tlsrptagg.TypeSums) int { return cmp.Compare(a.Type, b.Type) })
	return out, nil
}

// each calls f for every row of a query on the readers.
func (db *DB) each(ctx context.Context, query string, args []any, f func(row interface{ Scan(...any) error }) error) error {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
