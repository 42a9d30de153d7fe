// Package sqlstore implements store.Store on database/sql: SQLite through
// the pure-Go modernc.org/sqlite driver (the embedded default), and — with
// another Dialect — PostgreSQL. The SQL text is shared: `$n` placeholders,
// `INSERT … ON CONFLICT … RETURNING`, times as integer microseconds (UTC);
// what differs lives in Dialect (row locking for claims, migrations,
// unique-violation errors, backups).
//
// SQLite runs in WAL mode with a busy timeout, foreign keys on, and
// transactions that take the write lock when they begin (_txlock=immediate:
// no deferred-transaction upgrade deadlocks). Writes go through one
// connection; reads use a separate pool of query-only connections.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mailtls/mailtls/internal/store"
)

//go:embed migrations
var migrations embed.FS

// Dialect is what differs between database engines.
type Dialect struct {
	Name  string
	Goose goose.Dialect
	// Migrations holds the NNNNN_name.sql files of this engine.
	Migrations fs.FS
	// SkipLocked is appended to the row selection of claims (PostgreSQL:
	// " FOR UPDATE SKIP LOCKED"); SQLite serialises writers instead.
	SkipLocked string
	// ForUpdate is appended to a selection that locks its rows for the
	// transaction (PostgreSQL: " FOR UPDATE"); SQLite's writer holds the
	// whole database already.
	ForUpdate string
	// IndexedBy, if set, names the index a query must read a table by
	// (SQLite: INDEXED BY, where the planner would rather sort a range
	// than read a whole index in order).
	IndexedBy func(index string) string
	// IsUnique reports whether err is a uniqueness violation.
	IsUnique func(error) bool
	// Backup writes a consistent copy of the database at source to path
	// (nil: not supported; PostgreSQL has pg_dump).
	Backup func(ctx context.Context, source, path string) error
	// Lock, if set, is held while the schema is migrated, so that
	// instances opening one database together migrate it once.
	Lock func(ctx context.Context, db *sql.DB) (func(), error)
}

// SQLite is the dialect of modernc.org/sqlite.
var SQLite = Dialect{
	Name:       "sqlite",
	Goose:      goose.DialectSQLite3,
	Migrations: mustSub(migrations, "migrations/sqlite"),
	IsUnique: func(err error) bool {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false
		}
		return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	Backup:    backupSQLite,
	IndexedBy: func(index string) string { return " INDEXED BY " + index },
}

// backupSQLite runs VACUUM INTO, which reads one snapshot (a read
// transaction in WAL mode) and writes the copy. It needs a connection that
// may write (not the query-only readers) but not the writer: writes go on
// while it runs.
func backupSQLite(ctx context.Context, source, path string) error {
	db, err := sql.Open("sqlite", "file:"+escapePath(source)+"?_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "VACUUM INTO $1", path)
	return err
}

// BackupFile writes a consistent copy of the SQLite database at source to
// dest (which must not exist) while other processes keep using it. It
// neither creates nor migrates source: a newer mailtls can back up the
// database of an older running server.
func BackupFile(ctx context.Context, source, dest string) error {
	st, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("sqlstore: backup: %s is not a database file", source)
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("sqlstore: backup: %s exists", dest)
	}
	if err := backupSQLite(ctx, source, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	return os.Chmod(dest, 0o600)
}

// ErrUsePgDump is Backup's answer on PostgreSQL: the engine's own tools
// make consistent copies of a database in use.
var ErrUsePgDump = errors.New("sqlstore: a PostgreSQL store is backed up with PostgreSQL's tools: " +
	"pg_dump --format=custom (a consistent snapshot while instances keep running; restore with pg_restore), " +
	"or continuous archiving with pg_basebackup for point-in-time recovery; see docs/scaling.md")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// Options configure a DB. Zero values are defaults.
type Options struct {
	Now  store.Clock // default time.Now
	Rand io.Reader   // for share and unsubscribe ids; default crypto/rand
	// Logger receives migration messages; default discards them.
	Logger *slog.Logger
	// ReadConns is the size of the SQLite read pool (default 4).
	ReadConns int
	// Version migrates only up to this schema version (tests of upgrades);
	// 0 means the latest.
	Version int64
}

// DB is a store.Store on database/sql.
type DB struct {
	w, r *sql.DB // writer and readers (the same pool on PostgreSQL)
	d    Dialect
	path string        // the SQLite file
	pool *pgxpool.Pool // PostgreSQL's pool under w and r
	now  store.Clock
	rand io.Reader
}

var _ store.Store = (*DB)(nil)

// DefaultFile is the database's file name in the data directory.
const DefaultFile = "mailtls.db"

// DefaultPath is where `mailtls serve` keeps its database without
// configuration: $STATE_DIRECTORY (systemd's StateDirectory=) if set, else
// /var/lib/mailtls for root, else $XDG_DATA_HOME/mailtls or
// ~/.local/share/mailtls.
func DefaultPath(getenv func(string) string, uid int) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		// systemd may list several, separated by colons; the first is ours.
		d, _, _ = strings.Cut(d, ":")
		return filepath.Join(d, DefaultFile)
	}
	if uid == 0 {
		return filepath.Join("/var/lib/mailtls", DefaultFile)
	}
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "mailtls", DefaultFile)
	}
	return filepath.Join(getenv("HOME"), ".local", "share", "mailtls", DefaultFile)
}

// dsn is the modernc.org/sqlite DSN of path: a file: URI (so that '?' and
// '#' in a path are escaped, not parsed) with our settings.
func dsn(path string, readOnly bool) string {
	esc := escapePath(path)
	q := "_busy_timeout=5000&_foreign_keys=1&_synchronous=NORMAL&_txlock=immediate"
	if readOnly {
		q = "_busy_timeout=5000&_query_only=1"
	} else {
		q += "&_journal_mode=WAL"
	}
	return "file:" + esc + "?" + q
}

func escapePath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Open opens (creating it and its directory if needed) the SQLite database
// at path and migrates it to the latest schema.
func Open(ctx context.Context, path string, o Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlstore: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	// One writer: SQLite has one write lock anyway, and queueing in Go is
	// cheaper than spinning on SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	// The file holds password hashes and session data: owner only.
	if err := os.Chmod(path, 0o600); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	n := o.ReadConns
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db, err := OpenDB(ctx, SQLite, w, r, o)
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	db.path = path
	return db, nil
}

// OpenDB makes a DB of open pools (w for writes, r for reads; they may be
// the same) and migrates the schema. Close closes both.
func OpenDB(ctx context.Context, d Dialect, w, r *sql.DB, o Options) (*DB, error) {
	db := &DB{w: w, r: r, d: d, now: o.Now, rand: o.Rand}
	if db.now == nil {
		db.now = time.Now
	}
	if db.rand == nil {
		db.rand = rand.Reader
	}
	if d.Lock != nil {
		unlock, err := d.Lock(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: %w", err)
		}
		defer unlock()
	}
	if _, err := Migrate(ctx, d, w, o.Version, o.Logger); err != nil {
		return nil, err
	}
	// Under the lock too: two instances must not compute the same rows.
	if v, err := db.SchemaVersion(ctx); err == nil && v >= 5 {
		if n, err := db.backfillDays(ctx); err != nil {
			return nil, err
		} else if n > 0 && o.Logger != nil {
			o.Logger.Info("computed the day rows of TLS-RPT reports stored by an older version", "reports", n)
		}
	}
	return db, nil
}

// Migrate applies the dialect's migrations up to version (0: all) and
// returns the version reached.
func Migrate(ctx context.Context, d Dialect, db *sql.DB, version int64, log *slog.Logger) (int64, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := goose.NewProvider(d.Goose, db, d.Migrations,
		goose.WithDisableGlobalRegistry(true), goose.WithSlog(log))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: migrations: %w", err)
	}
	if version == 0 {
		_, err = p.Up(ctx)
	} else {
		_, err = p.UpTo(ctx, version)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: migrate: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return v, nil
}

// Versions lists the dialect's schema versions, ascending.
func Versions(d Dialect) ([]int64, error) {
	p, err := goose.NewProvider(d.Goose, &sql.DB{}, d.Migrations, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, err
	}
	var vs []int64
	for _, s := range p.ListSources() {
		vs = append(vs, s.Version)
	}
	return vs, nil
}

// SQL is the write pool, for tests and tools that inspect the database.
func (db *DB) SQL() *sql.DB { return db.w }

// Close closes the pools.
// closeWait bounds how long Close waits for connections still in use.
const closeWait = 5 * time.Second

func (db *DB) Close() error {
	err := db.w.Close()
	if db.r != db.w {
		err = errors.Join(err, db.r.Close())
	}
	// database/sql closes a connection still in use (a transaction whose
	// context ended is rolled back by a goroutine of its own) only when it
	// is released, after Close has returned. Wait for those, briefly, so
	// that a closed store is closed: SQLite folds its write-ahead log into
	// the file when the last connection goes.
	closed := false
	for deadline := time.Now().Add(closeWait); !closed && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		closed = db.w.Stats().OpenConnections+db.r.Stats().OpenConnections == 0
	}
	// Two connections closing at the same moment can each leave the
	// checkpoint to the other, and the log stays. One connection opened
	// and closed alone is the last one, and folds it.
	if closed && db.d.Name == SQLite.Name && db.path != "" {
		if _, statErr := os.Stat(db.path + "-wal"); statErr == nil {
			if last, openErr := sql.Open("sqlite", dsn(db.path, false)); openErr == nil {
				last.Ping()
				last.Close()
			}
		}
	}
	if db.pool != nil {
		db.pool.Close()
	}
	return err
}

// SchemaVersion implements store.Maintenance.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.r.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied").Scan(&v)
	return v, err
}

// Backup implements store.Maintenance.
func (db *DB) Backup(ctx context.Context, path string) error {
	if db.d.Name == Postgres.Name {
		return ErrUsePgDump
	}
	if db.d.Backup == nil || db.path == "" {
		return fmt.Errorf("sqlstore: %s has no built-in backup; use the engine's own tools", db.d.Name)
	}
	return BackupFile(ctx, db.path, path)
}

// tx runs f in a write transaction.
func (db *DB) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// clock is now in the store's time representation.
func (db *DB) clock() time.Time { return store.UTC(db.now()) }

// wrap turns driver errors into store errors.
func (db *DB) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case db.d.IsUnique != nil && db.d.IsUnique(err):
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return err
}

// affected returns ErrNotFound (or notFound) when res changed no row.
func affected(res sql.Result, err error, notFound error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// tv is a time as stored: microseconds since the epoch, NULL for zero.
func tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().UnixMicro()
}

// timeCol scans a stored time (NULL gives the zero time).
type timeCol struct{ t *time.Time }

func at(t *time.Time) timeCol { return timeCol{t} }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(x).UTC()
	case time.Time:
		*c.t = store.UTC(x)
	default:
		return fmt.Errorf("sqlstore: time column holds %T", v)
	}
	return nil
}

// strCol scans a nullable text column ("" for NULL).
type strCol struct{ s *string }

func (c strCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.s = ""
	case string:
		*c.s = x
	case []byte:
		*c.s = string(x)
	default:
		return fmt.Errorf("sqlstore: text column holds %T", v)
	}
	return nil
}

func nstr(s *string) strCol { return strCol{s} }

// ns is a string as stored: NULL for "".
func ns(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nid is an id as stored: NULL for 0.
func nid[T ~int64](id T) any {
	if id == 0 {
		return nil
	}
	return int64(id)
}

// idCol scans a nullable id (0 for NULL).
type idCol[T ~int64] struct{ p *T }

func (c idCol[T]) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.p = 0
	case int64:
		*c.p = T(x)
	default:
		return fmt.Errorf("sqlstore: id column holds %T", v)
	}
	return nil
}

func nidc[T ~int64](p *T) idCol[T] { return idCol[T]{p} }
