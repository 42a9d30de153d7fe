package sqlstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// MaxReport bounds a stored JSON document (and so its decompression).
const MaxReport = 32 << 20

const scanColNames = "id, user_id, domain_id, name, triggered_by, state, created_at, started_at, finished_at, expires_at, " +
	"scanner_version, catalog_version, report_schema, grade, policy_status, errors, warnings, infos, error, " +
	"report_size, stored_size, report_sha256, pruned_at"

var scanCols = scanColNames

// colsOf qualifies a list of columns with a table alias.
func colsOf(alias, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = alias + "." + p
	}
	return strings.Join(parts, ", ")
}

// intCol scans a nullable integer into an int (0 for NULL, as in a LEFT
// JOIN without a match).
type intCol struct{ p *int }

func (c intCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.p = 0
	case int64:
		*c.p = int(x)
	default:
		return fmt.Errorf("sqlstore: integer column holds %T", v)
	}
	return nil
}

// scanDest are the destinations of scanCols; every one accepts NULL.
func scanDest(s *store.Scan, sha *[]byte) []any {
	return []any{nidc(&s.ID), nidc(&s.UserID), nidc(&s.DomainID), nstr(&s.Name), strColT[store.Trigger]{&s.Trigger}, strColT[store.ScanState]{&s.State},
		at(&s.CreatedAt), at(&s.StartedAt), at(&s.FinishedAt), at(&s.ExpiresAt),
		nstr(&s.ScannerVersion), nstr(&s.CatalogVersion), intCol{&s.ReportSchema}, nstr(&s.Grade), nstr(&s.PolicyStatus),
		intCol{&s.Errors}, intCol{&s.Warnings}, intCol{&s.Infos}, nstr(&s.Error),
		intCol{&s.ReportSize}, intCol{&s.StoredSize}, sha, at(&s.PrunedAt)}
}

// strColT scans nullable text into a string type.
type strColT[T ~string] struct{ p *T }

func (c strColT[T]) Scan(v any) error {
	var s string
	if err := (strCol{&s}).Scan(v); err != nil {
		return err
	}
	*c.p = T(s)
	return nil
}

func finishScan(s *store.Scan, sha []byte) {
	copy(s.ReportSHA256[:], sha)
	s.Pruned = !s.PrunedAt.IsZero()
}

func scanScan(row interface{ Scan(...any) error }) (store.Scan, error) {
	var s store.Scan
	var sha []byte
	err := row.Scan(scanDest(&s, &sha)...)
	finishScan(&s, sha)
	return s, err
}

// CreateScan implements store.Scans.
func (db *DB) CreateScan(ctx context.Context, n store.NewScan) (store.Scan, error) {
	now := db.clock()
	if n.DomainID != 0 {
		// Name and owner come from the domain.
		s, err := scanScan(db.w.QueryRowContext(ctx, `INSERT INTO scans (user_id, domain_id, name, triggered_by, state, created_at, expires_at)
			SELECT user_id, id, name, $2, $3, $4, $5 FROM domains WHERE id = $1 RETURNING `+scanCols,
			n.DomainID, string(n.Trigger), string(store.ScanQueued), tv(now), tv(n.ExpiresAt)))
		return s, db.wrap(err)
	}
	if n.Name == "" || n.ExpiresAt.IsZero() {
		return store.Scan{}, errors.New("sqlstore: an anonymous scan needs a name and an expiry")
	}
	s, err := scanScan(db.w.QueryRowContext(ctx, `INSERT INTO scans (name, triggered_by, state, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+scanCols,
		n.Name, string(n.Trigger), string(store.ScanQueued), tv(now), tv(n.ExpiresAt)))
	return s, db.wrap(err)
}

// StartScan implements store.Scans.
func (db *DB) StartScan(ctx context.Context, id store.ScanID) error {
	res, err := db.w.ExecContext(ctx, "UPDATE scans SET state = $2, started_at = $3 WHERE id = $1 AND state = $4",
		id, string(store.ScanRunning), tv(db.clock()), string(store.ScanQueued))
	if err := affected(res, err, store.ErrConflict); !errors.Is(err, store.ErrConflict) {
		return err
	}
	if _, err := db.GetScan(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("%w: scan %d is not queued", store.ErrConflict, id)
}

// compress gzips a report; the encoding is stored beside it so that a
// later version can change it without rewriting old rows.
func compress(b []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "gzip", nil
}

func decompress(b []byte, encoding string, size int) ([]byte, error) {
	switch encoding {
	case "":
		return b, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		out := bytes.NewBuffer(make([]byte, 0, min(size, MaxReport)))
		n, err := io.Copy(out, io.LimitReader(zr, MaxReport+1))
		if err != nil {
			return nil, err
		}
		if n > MaxReport {
			return nil, fmt.Errorf("sqlstore: stored report exceeds %d bytes", MaxReport)
		}
		return out.Bytes(), nil
	}
	return nil, fmt.Errorf("sqlstore: unknown report encoding %q", encoding)
}

// FinishScan implements store.Scans.
func (db *DB) FinishScan(ctx context.Context, id store.ScanID, r store.ScanResult) (store.Scan, error) {
	if r.State != store.ScanDone && r.State != store.ScanFailed {
		return store.Scan{}, fmt.Errorf("sqlstore: a finished scan is done or failed, not %q", r.State)
	}
	if len(r.Report) > MaxReport {
		return store.Scan{}, fmt.Errorf("sqlstore: report of %d bytes exceeds %d", len(r.Report), MaxReport)
	}
	var blob []byte
	var enc string
	var sum []byte
	if r.Report != nil {
		var err error
		if blob, enc, err = compress(r.Report); err != nil {
			return store.Scan{}, err
		}
		h := sha256.Sum256(r.Report)
		sum = h[:]
	}
	var counts [3]int
	for _, f := range r.Findings {
		switch f.Severity {
		case "error":
			counts[0]++
		case "warning":
			counts[1]++
		default:
			counts[2]++
		}
	}
	now := db.clock()
	var s store.Scan
	lost := false
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		s, err = scanScan(tx.QueryRowContext(ctx, "SELECT "+scanCols+" FROM scans WHERE id = $1", id))
		if err != nil {
			return err
		}
		if s.State == store.ScanDone || s.State == store.ScanFailed {
			return fmt.Errorf("%w: scan %d has finished already", store.ErrConflict, id)
		}
		if r.Release != nil {
			err := releaseDomain(ctx, tx, s.DomainID, r.Release.Owner, r.Release.Next, r.Release.AlertState, r.Release.OpenErrors, r.Release.OpenWarnings)
			if errors.Is(err, store.ErrLeaseLost) {
				// Another worker owns the domain now: keep nothing of this
				// result, so its alerts cannot be sent twice.
				lost = true
				s, err = scanScan(tx.QueryRowContext(ctx, `UPDATE scans SET state = $2, finished_at = $3, error = $4
					WHERE id = $1 RETURNING `+scanCols, id, string(store.ScanFailed), tv(now),
					"lease lost: another worker took the domain over"))
				return err
			}
			if err != nil {
				return err
			}
		}
		started := s.StartedAt
		if started.IsZero() {
			started = now
		}
		s, err = scanScan(tx.QueryRowContext(ctx, `UPDATE scans SET state = $2, started_at = $3, finished_at = $4,
			scanner_version = $5, catalog_version = $6, report_schema = $7, grade = $8, policy_status = $9,
			errors = $10, warnings = $11, infos = $12, error = $13,
			report_size = $14, stored_size = $15, report_sha256 = $16
			WHERE id = $1 RETURNING `+scanCols,
			id, string(r.State), tv(started), tv(now), r.ScannerVersion, r.CatalogVersion, r.ReportSchema, r.Grade, r.PolicyStatus,
			counts[0], counts[1], counts[2], r.Error, len(r.Report), len(blob), sum))
		if err != nil {
			return err
		}
		if blob != nil {
			if _, err := tx.ExecContext(ctx, "INSERT INTO scan_reports (scan_id, encoding, data) VALUES ($1, $2, $3)", id, enc, blob); err != nil {
				return err
			}
		}
		for i, f := range r.Findings {
			if _, err := tx.ExecContext(ctx, `INSERT INTO scan_findings (scan_id, seq, finding_id, severity, component, subject, message)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, i+1, f.ID, f.Severity, f.Component, f.Subject, f.Message); err != nil {
				return err
			}
		}
		if len(r.Messages) > 0 {
			if _, err := enqueue(ctx, tx, now, r.Messages); err != nil {
				return err
			}
		}
		if s.DomainID != 0 && r.State == store.ScanDone {
			return summarise(ctx, tx, s.DomainID)
		}
		return nil
	})
	if err == nil && lost {
		err = store.ErrLeaseLost
	}
	return s, db.wrap(err)
}

// GetScan implements store.Scans.
func (db *DB) GetScan(ctx context.Context, id store.ScanID) (store.Scan, error) {
	s, err := scanScan(db.r.QueryRowContext(ctx, "SELECT "+scanCols+" FROM scans WHERE id = $1", id))
	return s, db.wrap(err)
}

// ScanReport implements store.Scans.
func (db *DB) ScanReport(ctx context.Context, id store.ScanID) ([]byte, error) {
	var blob []byte
	var enc string
	var size int
	var pruned time.Time
	err := db.r.QueryRowContext(ctx, `SELECT r.data, COALESCE(r.encoding, ''), s.report_size, s.pruned_at
		FROM scans s LEFT JOIN scan_reports r ON r.scan_id = s.id WHERE s.id = $1`, id).
		Scan(&blob, &enc, &size, at(&pruned))
	if err != nil {
		return nil, db.wrap(err)
	}
	if !pruned.IsZero() {
		return nil, store.ErrPruned
	}
	if blob == nil {
		return nil, fmt.Errorf("%w: scan %d has no report", store.ErrNotFound, id)
	}
	return decompress(blob, enc, size)
}

// ScanFindings implements store.Scans.
func (db *DB) ScanFindings(ctx context.Context, id store.ScanID) ([]store.Finding, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT finding_id, severity, component, subject, message FROM scan_findings WHERE scan_id = $1 ORDER BY seq", id)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.Finding, error) {
		var f store.Finding
		err := row.Scan(&f.ID, &f.Severity, &f.Component, &f.Subject, &f.Message)
		return f, err
	})
}

// A scan cursor is "<created_at µs>.<id>" of the last row of a page.
func scanCursor(s store.Scan) store.Cursor {
	return store.Cursor(strconv.FormatInt(s.CreatedAt.UnixMicro(), 10) + "." + strconv.FormatInt(int64(s.ID), 10))
}

func parseScanCursor(c store.Cursor) (created, id int64, err error) {
	a, b, ok := strings.Cut(string(c), ".")
	if ok {
		created, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			id, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("sqlstore: bad cursor %q", c)
	}
	return created, id, nil
}

// ListScans implements store.Scans.
func (db *DB) ListScans(ctx context.Context, domain store.DomainID, before store.Cursor, limit int) ([]store.Scan, store.Cursor, error) {
	if limit <= 0 {
		limit = 50
	}
	created, id := int64(1<<62), int64(1<<62)
	if before != "" {
		var err error
		if created, id, err = parseScanCursor(before); err != nil {
			return nil, "", err
		}
	}
	// One more than a page tells whether there is a next one.
	rows, err := db.r.QueryContext(ctx, "SELECT "+scanCols+` FROM scans WHERE domain_id = $1
		AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4`,
		domain, created, id, limit+1)
	if err != nil {
		return nil, "", err
	}
	scans, err := collect(rows, scanScan)
	if err != nil || len(scans) <= limit {
		return scans, "", err
	}
	scans = scans[:limit]
	return scans, scanCursor(scans[limit-1]), nil
}

// AppendScanEvent implements store.ScanEvents.
func (db *DB) AppendScanEvent(ctx context.Context, scan store.ScanID, kind string, data []byte) (store.ScanEvent, error) {
	e := store.ScanEvent{ScanID: scan, Kind: kind, Data: data, CreatedAt: db.clock()}
	if e.Data == nil {
		e.Data = []byte{}
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		// Appends to one scan take turns on its row (SQLite's writer
		// serialises them anyway), so the sequence has no gaps or twins.
		var id store.ScanID
		if err := tx.QueryRowContext(ctx, "SELECT id FROM scans WHERE id = $1"+db.d.ForUpdate, scan).Scan(&id); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO scan_events (scan_id, seq, created_at, kind, data)
			SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM scan_events WHERE scan_id = $1 RETURNING seq`,
			scan, tv(e.CreatedAt), kind, e.Data).Scan(&e.Seq)
	})
	return e, db.wrap(err)
}

// ScanEventsAfter implements store.ScanEvents.
func (db *DB) ScanEventsAfter(ctx context.Context, scan store.ScanID, after int64, limit int) ([]store.ScanEvent, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT scan_id, seq, created_at, kind, data FROM scan_events WHERE scan_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
		scan, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.ScanEvent, error) {
		var e store.ScanEvent
		err := row.Scan(&e.ScanID, &e.Seq, at(&e.CreatedAt), &e.Kind, &e.Data)
		return e, err
	})
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID is 128 random bits in lower-case base32 (26 characters).
func (db *DB) randomID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(db.rand, b[:]); err != nil {
		return "", fmt.Errorf("sqlstore: random id: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}

const shareCols = "id, scan_id, user_id, created_at, expires_at"

func scanShare(row interface{ Scan(...any) error }) (store.Share, error) {
	var s store.Share
	err := row.Scan(&s.ID, &s.ScanID, &s.UserID, at(&s.CreatedAt), at(&s.ExpiresAt))
	return s, err
}

// CreateShare implements store.Shares.
func (db *DB) CreateShare(ctx context.Context, user store.UserID, scan store.ScanID, ttl time.Duration) (store.Share, error) {
	if ttl <= 0 {
		return store.Share{}, errors.New("sqlstore: a share needs a positive lifetime")
	}
	id, err := db.randomID()
	if err != nil {
		return store.Share{}, err
	}
	now := db.clock()
	// Only a saved scan of the user's own domain can be shared.
	s, err := scanShare(db.w.QueryRowContext(ctx, `INSERT INTO shares (id, scan_id, user_id, created_at, expires_at)
		SELECT $1, id, user_id, $4, $5 FROM scans WHERE id = $2 AND user_id = $3 AND domain_id IS NOT NULL RETURNING `+shareCols,
		id, scan, user, tv(now), tv(now.Add(ttl))))
	return s, db.wrap(err)
}

// GetShare implements store.Shares.
func (db *DB) GetShare(ctx context.Context, id string) (store.Share, error) {
	s, err := scanShare(db.r.QueryRowContext(ctx, "SELECT "+shareCols+" FROM shares WHERE id = $1 AND expires_at > $2", id, tv(db.clock())))
	return s, db.wrap(err)
}

// ListShares implements store.Shares.
func (db *DB) ListShares(ctx context.Context, user store.UserID) ([]store.Share, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+shareCols+" FROM shares WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at, id",
		user, tv(db.clock()))
	if err != nil {
		return nil, err
	}
	return collect(rows, scanShare)
}

// DeleteShare implements store.Shares.
func (db *DB) DeleteShare(ctx context.Context, user store.UserID, id string) error {
	res, err := db.w.ExecContext(ctx, "DELETE FROM shares WHERE id = $1 AND user_id = $2", id, user)
	return db.wrap(affected(res, err, store.ErrNotFound))
}

// AcquireLease implements store.Leases.
func (db *DB) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if owner == "" {
		return false, errors.New("sqlstore: empty lease owner")
	}
	now := db.clock()
	res, err := db.w.ExecContext(ctx, `INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE leases.owner = excluded.owner OR leases.expires_at <= $4`, name, owner, tv(now.Add(ttl)), tv(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RenewLease implements store.Leases.
func (db *DB) RenewLease(ctx context.Context, name, owner string, ttl time.Duration) error {
	res, err := db.w.ExecContext(ctx, "UPDATE leases SET expires_at = $3 WHERE name = $1 AND owner = $2", name, owner, tv(db.clock().Add(ttl)))
	return affected(res, err, store.ErrLeaseLost)
}

// ReleaseLease implements store.Leases.
func (db *DB) ReleaseLease(ctx context.Context, name, owner string) error {
	res, err := db.w.ExecContext(ctx, "DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)
	return affected(res, err, store.ErrLeaseLost)
}
