package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Postgres is the dialect of PostgreSQL through jackc/pgx: the shared SQL,
// claims that skip rows another instance has locked, and migrations run
// by one instance at a time.
var Postgres = Dialect{
	Name:       "postgres",
	Goose:      goose.DialectPostgres,
	Migrations: mustSub(migrations, "migrations/postgres"),
	// The claim's selection locks the rows it picks and skips those
	// another claimer holds, so concurrent instances share out due
	// domains and outbox messages instead of queueing on one row.
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	ForUpdate:  " FOR UPDATE",
	IsUnique: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505" // unique_violation
	},
	Lock: advisoryLock,
}

// defaultConnectTimeout bounds each new connection to PostgreSQL.
const defaultConnectTimeout = 15 * time.Second

// migrationLock is the key of the advisory lock held while the schema is
// migrated (an arbitrary constant: "mailtls" in ASCII).
const migrationLock = 0x6d61696c746c73

// advisoryLock takes PostgreSQL's session-level advisory lock on a
// connection of its own and returns its release: instances started
// together wait in pg_advisory_lock (bounded by ctx) while the first one
// migrates, then find the schema current. The lock ends with the session,
// so a migrator that dies never leaves it held.
func advisoryLock(ctx context.Context, db *sql.DB) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	return func() {
		// Not the caller's context: the lock must go even if it ended.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", int64(migrationLock)); err != nil {
			// Drop the session instead, which releases the lock.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// Redact returns a database URL without its password, for logs and
// messages.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil {
			return "(an unparsable database URL)"
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// OpenPostgres connects to the PostgreSQL database at dbURL (a
// postgres:// URL; pgx's pool settings such as pool_max_conns may be
// given in its query, the password also through PGPASSWORD or
// ~/.pgpass) and migrates it to the latest schema under an advisory lock.
func OpenPostgres(ctx context.Context, dbURL string, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// pgx's message quotes the URL with its password masked.
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A server that does not answer fails the start (or a query)
		// instead of hanging it; connect_timeout in the URL overrides.
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	sdb := stdlib.OpenDBFromPool(pool)
	db, err := OpenDB(ctx, Postgres, sdb, sdb, o)
	if err != nil {
		sdb.Close()
		pool.Close()
		return nil, err
	}
	db.pool = pool
	return db, nil
}

// PoolStats is a snapshot of the database connection pool of one
// instance.
type PoolStats struct {
	MaxConns, TotalConns, IdleConns, AcquiredConns int64
	// AcquireCount and EmptyAcquireCount count acquisitions in all and
	// those that had to wait for a connection; AcquireWait is the time
	// spent waiting.
	AcquireCount, EmptyAcquireCount, CanceledAcquireCount int64
	AcquireWait                                           time.Duration
}

// PoolStats returns the PostgreSQL pool's figures (pgxpool.Stat); ok is
// false for SQLite, whose connections are local file handles.
func (db *DB) PoolStats() (PoolStats, bool) {
	if db.pool == nil {
		return PoolStats{}, false
	}
	s := db.pool.Stat()
	return PoolStats{
		MaxConns: int64(s.MaxConns()), TotalConns: int64(s.TotalConns()), IdleConns: int64(s.IdleConns()),
		AcquiredConns: int64(s.AcquiredConns()), AcquireCount: s.AcquireCount(), EmptyAcquireCount: s.EmptyAcquireCount(),
		CanceledAcquireCount: s.CanceledAcquireCount(), AcquireWait: s.EmptyAcquireWaitTime(),
	}, true
}

// Engine names the database engine: "sqlite" or "postgres".
func (db *DB) Engine() string { return db.d.Name }

// ResetSequences moves every identity sequence past the largest id of its
// table, after rows were inserted with explicit ids (a migration from
// SQLite, a test fixture). It does nothing on SQLite, whose
// AUTOINCREMENT follows the largest id by itself.
func ResetSequences(ctx context.Context, d Dialect, db *sql.DB) error {
	if d.Name != Postgres.Name {
		return nil
	}
	rows, err := db.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name`)
	if err != nil {
		return err
	}
	type col struct{ table, column string }
	cols, err := collect(rows, func(row interface{ Scan(...any) error }) (col, error) {
		var c col
		return c, row.Scan(&c.table, &c.column)
	})
	if err != nil {
		return err
	}
	for _, c := range cols {
		if _, err := db.ExecContext(ctx, setvalQuery(c.table, c.column), 0); err != nil {
			return fmt.Errorf("sequence of %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}
