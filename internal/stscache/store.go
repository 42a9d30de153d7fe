package stscache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite")

	"github.com/mailtls/mailtls/internal/mtasts"
)

// Store keeps the policies in force in a SQLite file: one row per domain
// with the record id, the policy in its canonical form (RFC 8461 §3.2, as
// mtasts writes it) and the fetch and check times.
type Store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS sts_policy (
	domain     TEXT PRIMARY KEY,
	policy_id  TEXT NOT NULL,
	policy     TEXT NOT NULL,
	fetched_at INTEGER NOT NULL,
	checked_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sts_policy_expires ON sts_policy(expires_at);
`

// OpenStore opens or creates the file.
func OpenStore(path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("policy cache %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; reads are rare (misses, start)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("policy cache %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Write deletes every row when purge is set, then writes each entry (a nil
// entry deletes its domain), in one transaction.
func (s *Store) Write(ctx context.Context, purge bool, entries map[string]*Entry) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if purge {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sts_policy`); err != nil {
			return err
		}
	}
	up, err := tx.PrepareContext(ctx, `INSERT INTO sts_policy (domain, policy_id, policy, fetched_at, checked_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(domain) DO UPDATE SET policy_id = excluded.policy_id, policy = excluded.policy,
			fetched_at = excluded.fetched_at, checked_at = excluded.checked_at, expires_at = excluded.expires_at`)
	if err != nil {
		return err
	}
	defer up.Close()
	del, err := tx.PrepareContext(ctx, `DELETE FROM sts_policy WHERE domain = ?`)
	if err != nil {
		return err
	}
	defer del.Close()
	for d, e := range entries {
		if e == nil || e.Policy == nil {
			_, err = del.ExecContext(ctx, d)
		} else {
			_, err = up.ExecContext(ctx, d, e.ID, e.Policy.String(), int64(e.FetchedAt), int64(e.CheckedAt), e.Expires())
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Load returns up to limit unexpired policies, most recently fetched first.
func (s *Store) Load(ctx context.Context, now int64, limit int) ([]*Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT domain, policy_id, policy, fetched_at, checked_at FROM sts_policy
		WHERE expires_at > ? ORDER BY fetched_at DESC LIMIT ?`, now, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, rows.Err()
}

// Get returns the unexpired policy of domain, or nil.
func (s *Store) Get(ctx context.Context, domain string, now int64) (*Entry, error) {
	row := s.db.QueryRowContext(ctx, `SELECT domain, policy_id, policy, fetched_at, checked_at FROM sts_policy
		WHERE domain = ? AND expires_at > ?`, domain, now)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// DeleteExpired deletes the policies that expired before now.
func (s *Store) DeleteExpired(ctx context.Context, now int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sts_policy WHERE expires_at <= ?`, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Count is the number of rows.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sts_policy`).Scan(&n)
	return n, err
}

type scanner interface{ Scan(dest ...any) error }

// scanEntry reads one row. A policy that no longer parses (a file edited
// by hand) is skipped rather than trusted.
func scanEntry(r scanner) (*Entry, error) {
	var (
		e      Entry
		policy string
	)
	var fetched, checked int64
	if err := r.Scan(&e.Domain, &e.ID, &policy, &fetched, &checked); err != nil {
		return nil, err
	}
	e.FetchedAt, e.CheckedAt = Sec(fetched), Sec(checked)
	pp := mtasts.ParsePolicy([]byte(policy))
	if pp.Policy == nil {
		return nil, nil
	}
	e.Policy = pp.Policy
	e.Outcome, e.At = OutcomePolicy, e.CheckedAt
	return &e, nil
}
