package sqlstore

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/internal/store"
)

// The anonymous scans of the web checker when instances share them. They
// are not part of the store's schema versions: they live an hour at most,
// `mailtls store migrate` does not copy them (tables skips the prefix), and
// their tables are made when an instance first uses them.
const anonSchema = `
CREATE TABLE IF NOT EXISTS anonscan_jobs (
	id        TEXT PRIMARY KEY,
	domain    TEXT NOT NULL,
	smtp      INTEGER NOT NULL,
	state     TEXT NOT NULL,
	final     INTEGER NOT NULL,
	owner     TEXT NOT NULL,
	heartbeat BIGINT NOT NULL,
	created   BIGINT NOT NULL,
	started   BIGINT,
	finished  BIGINT,
	expires   BIGINT,
	error     TEXT NOT NULL DEFAULT '',
	record    TEXT,
	client    TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS anonscan_jobs_live ON anonscan_jobs(domain, smtp) WHERE final = 0;
CREATE INDEX IF NOT EXISTS anonscan_jobs_recent ON anonscan_jobs(domain, smtp, finished) WHERE state = 'done';
CREATE INDEX IF NOT EXISTS anonscan_jobs_expires ON anonscan_jobs(expires);
CREATE TABLE IF NOT EXISTS anonscan_events (
	job     TEXT NOT NULL REFERENCES anonscan_jobs(id) ON DELETE CASCADE,
	seq     INTEGER NOT NULL,
	body    TEXT NOT NULL,
	written BIGINT NOT NULL,
	PRIMARY KEY (job, seq)
);
CREATE TABLE IF NOT EXISTS anonscan_clients (
	client TEXT PRIMARY KEY,
	tat    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS anonscan_clients_tat ON anonscan_clients(tat);
CREATE TABLE IF NOT EXISTS anonscan_secret (
	id     INTEGER PRIMARY KEY,
	secret TEXT NOT NULL
)`

// anonClientIndex counts a client's live scans; it is made after the
// client column is added to a table of an older version.
const anonClientIndex = `CREATE INDEX IF NOT EXISTS anonscan_jobs_client ON anonscan_jobs(client) WHERE final = 0`

// anonPrefix starts the names of the anonymous scans' tables.
const anonPrefix = "anonscan_"

// anonChannel is the PostgreSQL notification channel of anonymous scans;
// a payload is "<id> <seq>" (seq 0: a new state), far below NOTIFY's 8000
// bytes.
const anonChannel = "mailtls_anonscans"

// AnonScans is the store's store.AnonScans.
type AnonScans struct {
	db *DB
	// secret keys the hash of client keys; it is the same for every
	// instance of the database (made by the first).
	secret []byte
}

var _ store.AnonScans = (*AnonScans)(nil)

// AnonScans makes the anonymous scans' tables if needed (under the
// migration lock on PostgreSQL) and returns them.
func (db *DB) AnonScans(ctx context.Context) (*AnonScans, error) {
	if db.d.Lock != nil {
		unlock, err := db.d.Lock(ctx, db.w)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: %w", err)
		}
		defer unlock()
	}
	for _, stmt := range strings.Split(anonSchema, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.w.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("sqlstore: anonymous scans: %w", err)
		}
	}
	if err := db.anonClientColumn(ctx); err != nil {
		return nil, fmt.Errorf("sqlstore: anonymous scans: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO anonscan_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`,
		hex.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("sqlstore: anonymous scans: %w", err)
	}
	var secret string
	if err := db.w.QueryRowContext(ctx, `SELECT secret FROM anonscan_secret WHERE id = 1`).Scan(&secret); err != nil {
		return nil, fmt.Errorf("sqlstore: anonymous scans: %w", err)
	}
	return &AnonScans{db: db, secret: []byte(secret)}, nil
}

// anonClientColumn adds the client column to a table made by a version
// without it, then its index. (The column is looked up first: on
// PostgreSQL, ALTER TABLE would lock the table at every start.)
func (db *DB) anonClientColumn(ctx context.Context) error {
	q := `SELECT COUNT(*) FROM pragma_table_info('anonscan_jobs') WHERE name = 'client'`
	if db.pool != nil {
		q = `SELECT COUNT(*) FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'anonscan_jobs' AND column_name = 'client'`
	}
	var n int
	if err := db.w.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := db.w.ExecContext(ctx, `ALTER TABLE anonscan_jobs ADD COLUMN client TEXT NOT NULL DEFAULT ''`); err != nil {
			return err
		}
	}
	_, err := db.w.ExecContext(ctx, anonClientIndex)
	return err
}

// clientHash is what the store keeps of a client key: not the address,
// but an HMAC of it under the database's secret, so that the rows do not
// show it to a casual reader (one who has the whole database, secret
// included, can still test guessed addresses against it).
func (a *AnonScans) clientHash(key string) string {
	m := hmac.New(sha256.New, a.secret)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// notify signals a change inside tx (PostgreSQL delivers it at commit, so
// a listener never reads before the row is visible).
func (a *AnonScans) notify(ctx context.Context, tx *sql.Tx, id string, seq int) error {
	if a.db.pool == nil {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", anonChannel, id+" "+strconv.Itoa(seq))
	return err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const anonCols = `id, domain, smtp, state, final, owner, heartbeat, created, started, finished, expires, error, record`

func scanAnon(row interface{ Scan(...any) error }) (*store.AnonScan, error) {
	var s store.AnonScan
	var smtp, final int
	var rec sql.NullString
	if err := row.Scan(&s.ID, &s.Domain, &smtp, &s.State, &final, &s.Owner, at(&s.Heartbeat), at(&s.Created),
		at(&s.Started), at(&s.Finished), at(&s.Expires), &s.Error, &rec); err != nil {
		return nil, err
	}
	s.SMTP, s.Final = smtp == 1, final == 1
	if rec.Valid {
		s.Record = []byte(rec.String)
	}
	return &s, nil
}

func nrec(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// BeginAnonScan implements store.AnonScans. With limits, the client's
// rate row is written first: on PostgreSQL it stays locked until the
// transaction ends, so that two instances admitting scans of one client
// take turns; SQLite has one writer at a time anyway.
func (a *AnonScans) BeginAnonScan(ctx context.Context, s store.AnonScan, lim store.AnonLimits) (*store.AnonScan, error) {
	limited := lim.Rate > 0 || lim.Concurrent > 0
	if lim.Now.IsZero() {
		lim.Now = time.Now()
	}
	var other, refused bool
	err := a.db.tx(ctx, func(tx *sql.Tx) error {
		client, now := "", lim.Now.UTC().UnixMicro()
		var tat int64
		if limited {
			client = a.clientHash(lim.Client)
			if err := tx.QueryRowContext(ctx, `INSERT INTO anonscan_clients (client, tat) VALUES ($1, $2)
				ON CONFLICT (client) DO UPDATE SET tat = anonscan_clients.tat RETURNING tat`, client, now).Scan(&tat); err != nil {
				return err
			}
			// Joining a live scan is free: no limit applies. (Both counts
			// in one round trip.)
			var live, mine int
			if err := tx.QueryRowContext(ctx, `SELECT
				(SELECT COUNT(*) FROM anonscan_jobs WHERE domain = $1 AND smtp = $2 AND final = 0),
				(SELECT COUNT(*) FROM anonscan_jobs WHERE client = $3 AND final = 0)`,
				s.Domain, b2i(s.SMTP), client).Scan(&live, &mine); err != nil {
				return err
			}
			if live > 0 {
				other = true
				return errRollback
			}
			if lim.Concurrent > 0 && mine >= lim.Concurrent {
				refused = true
				return &store.AnonLimitError{Limit: "concurrent"}
			}
			if lim.Rate > 0 {
				// The bucket as a theoretical arrival time (GCRA): a scan
				// is admitted while tat, moved one interval on, stays within
				// burst intervals of now; tat <= now is a full bucket.
				interval := int64(1e6 / lim.Rate)
				next := max(tat, now) + interval
				if over := next - now - int64(max(lim.Burst, 1))*interval; over > 0 {
					refused = true
					return &store.AnonLimitError{Limit: "rate", RetryAfter: time.Duration(over) * time.Microsecond}
				}
				if _, err := tx.ExecContext(ctx, `UPDATE anonscan_clients SET tat = $2 WHERE client = $1`, client, next); err != nil {
					return err
				}
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO anonscan_jobs (`+anonCols+`, client)
			VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, NULL, NULL, '', NULL, $9) ON CONFLICT DO NOTHING`,
			s.ID, s.Domain, b2i(s.SMTP), s.State, s.Owner, tv(s.Heartbeat), tv(s.Created), tv(s.Started), client)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			other = true // filed meanwhile by another client's request
			return cmp.Or(err, errRollback)
		}
		return nil
	})
	switch {
	case err == nil:
		return &s, nil
	case refused:
		return nil, err
	case !other:
		return nil, a.db.wrap(err)
	}
	err = fmt.Errorf("%w: a live scan of %s", store.ErrConflict, s.Domain)
	old, gerr := scanAnon(a.db.w.QueryRowContext(ctx, `SELECT `+anonCols+` FROM anonscan_jobs
		WHERE domain = $1 AND smtp = $2 AND final = 0`, s.Domain, b2i(s.SMTP)))
	if gerr != nil {
		// It ended meanwhile: the caller may try again.
		return nil, fmt.Errorf("%w (the live scan ended: %v)", err, a.db.wrap(gerr))
	}
	return old, err
}

// errRollback ends a transaction that found what it needed to know.
var errRollback = errors.New("sqlstore: rolled back")

// SetAnonState implements store.AnonScans.
func (a *AnonScans) SetAnonState(ctx context.Context, id, state string, started time.Time) error {
	return a.db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE anonscan_jobs SET state = $2, started = $3 WHERE id = $1 AND final = 0`,
			id, state, tv(started))
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		return a.notify(ctx, tx, id, 0)
	})
}

// AddAnonEvent implements store.AnonScans.
func (a *AnonScans) AddAnonEvent(ctx context.Context, id string, e store.AnonEvent) error {
	return a.db.wrap(a.db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO anonscan_events (job, seq, body, written) VALUES ($1, $2, $3, $4)`,
			id, e.Seq, string(e.Body), tv(e.Written)); err != nil {
			return err
		}
		return a.notify(ctx, tx, id, e.Seq)
	}))
}

// FinishAnonScan implements store.AnonScans.
func (a *AnonScans) FinishAnonScan(ctx context.Context, s store.AnonScan) error {
	if s.Heartbeat.IsZero() {
		s.Heartbeat = s.Finished // filed final at once: never live
	}
	return a.db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO anonscan_jobs (`+anonCols+`)
			VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state, final = 1, client = '', started = excluded.started,
				finished = excluded.finished, expires = excluded.expires, error = excluded.error, record = excluded.record`,
			s.ID, s.Domain, b2i(s.SMTP), s.State, s.Owner, tv(s.Heartbeat), tv(s.Created), tv(s.Started),
			tv(s.Finished), tv(s.Expires), s.Error, nrec(s.Record)); err != nil {
			return err
		}
		return a.notify(ctx, tx, s.ID, 0)
	})
}

// GetAnonScan implements store.AnonScans.
func (a *AnonScans) GetAnonScan(ctx context.Context, id string) (*store.AnonScan, error) {
	s, err := scanAnon(a.db.r.QueryRowContext(ctx, `SELECT `+anonCols+` FROM anonscan_jobs WHERE id = $1`, id))
	return s, a.db.wrap(err)
}

// RecentAnonScan implements store.AnonScans.
func (a *AnonScans) RecentAnonScan(ctx context.Context, domain string, smtp bool, since time.Time) (*store.AnonScan, error) {
	s, err := scanAnon(a.db.r.QueryRowContext(ctx, `SELECT `+anonCols+` FROM anonscan_jobs
		WHERE domain = $1 AND smtp = $2 AND state = 'done' AND finished >= $3
		ORDER BY finished DESC LIMIT 1`, domain, b2i(smtp), tv(since)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return s, a.db.wrap(err)
}

// AnonEvents implements store.AnonScans.
func (a *AnonScans) AnonEvents(ctx context.Context, id string, after, limit int) ([]store.AnonEvent, error) {
	rows, err := a.db.r.QueryContext(ctx, `SELECT seq, body, written FROM anonscan_events
		WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row interface{ Scan(...any) error }) (store.AnonEvent, error) {
		var e store.AnonEvent
		var body string
		err := row.Scan(&e.Seq, &body, at(&e.Written))
		e.Body = []byte(body)
		return e, err
	})
}

// HeartbeatAnonScans implements store.AnonScans.
func (a *AnonScans) HeartbeatAnonScans(ctx context.Context, owner string, ids []string, t time.Time) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := []any{owner, tv(t)}
		marks := make([]string, n)
		for i, id := range ids[:n] {
			args = append(args, id)
			marks[i] = "$" + strconv.Itoa(i+3)
		}
		if _, err := a.db.w.ExecContext(ctx, `UPDATE anonscan_jobs SET heartbeat = $2 WHERE owner = $1 AND final = 0 AND id IN (`+
			strings.Join(marks, ", ")+`)`, args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// InterruptAnonScans implements store.AnonScans.
func (a *AnonScans) InterruptAnonScans(ctx context.Context, staleBefore, now, expires time.Time, reason string) (int, error) {
	n := 0
	err := a.db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE anonscan_jobs SET state = 'failed', final = 1, client = '', finished = $2, expires = $3, error = $4
			WHERE final = 0 AND heartbeat < $1 RETURNING id`, tv(staleBefore), tv(now), tv(expires), reason)
		if err != nil {
			return err
		}
		ids, err := collect(rows, func(row interface{ Scan(...any) error }) (string, error) {
			var id string
			return id, row.Scan(&id)
		})
		if err != nil {
			return err
		}
		n = len(ids)
		for _, id := range ids {
			if err := a.notify(ctx, tx, id, 0); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// DeleteExpiredAnonScans implements store.AnonScans.
func (a *AnonScans) DeleteExpiredAnonScans(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := a.db.tx(ctx, func(tx *sql.Tx) error {
		// Events first: SQLite's foreign keys are on, but say it once for
		// both engines.
		if _, err := tx.ExecContext(ctx, `DELETE FROM anonscan_events WHERE job IN
			(SELECT id FROM anonscan_jobs WHERE final = 1 AND expires <= $1)`, tv(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM anonscan_jobs WHERE final = 1 AND expires <= $1`, tv(now))
		if err != nil {
			return err
		}
		// A full bucket is no different from none.
		if _, err := tx.ExecContext(ctx, `DELETE FROM anonscan_clients WHERE tat <= $1`, tv(now)); err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// ListenAnonScans implements store.AnonScans: on PostgreSQL a connection
// of its own (outside the pool) LISTENs; ready is called once it does.
func (a *AnonScans) ListenAnonScans(ctx context.Context, ready func(), f func(store.AnonNotice)) error {
	if a.db.pool == nil {
		return store.ErrNoListen
	}
	conn, err := pgx.ConnectConfig(ctx, a.db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+anonChannel); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		id, seq, ok := strings.Cut(n.Payload, " ")
		s, err := strconv.Atoi(seq)
		if !ok || err != nil {
			continue // not ours
		}
		f(store.AnonNotice{ID: id, Seq: s})
	}
}
