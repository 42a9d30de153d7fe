// Package certstorage keeps certmagic's storage in PostgreSQL, so that
// several `mailtls serve` instances with the host role share one ACME
// account, one set of certificates and the challenge tokens, and never
// order the same certificate twice (docs/scaling.md, "Certificates").
//
// It implements certmagic's Storage, Locker and TryLocker with the
// semantics of certmagic's own FileStorage: keys are slash-separated
// paths, a "directory" is a prefix of other keys, Load, Stat and List of a
// missing key fail with fs.ErrNotExist, Delete removes a key and
// everything under it.
package certstorage

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Lock timing. See Postgres for why locks are leases.
const (
	// DefaultLockTTL is how long a lock outlives its holder's last sign of
	// life: an instance killed while it holds one (SIGKILL, power loss, a
	// network partition) delays the others by at most this much. It is
	// long enough that a holder that is merely slow (a loaded database, a
	// stalled refresh) keeps its lock: the lease is extended every
	// DefaultLockTTL/4.
	DefaultLockTTL = 30 * time.Second
	// DefaultLockPoll is how often a waiting Lock tries again
	// (certmagic's FileStorage polls every second too).
	DefaultLockPoll = time.Second
)

// migrationLockID is the PostgreSQL advisory lock that serialises the
// migrations of instances starting together (distinct from the one the
// store's own migrations use, so neither waits for the other).
const migrationLockID int64 = 0x6d61696c746c7301 // "mailtls" 0x01

// versionTable records which migrations of this package were applied.
const versionTable = "certmagic_goose_version"

//go:embed migrations/*.sql
var migrations embed.FS

// ErrLockLost is returned by Unlock when the lock had expired and another
// holder took it over: the critical section may not have been exclusive.
var ErrLockLost = errors.New("certstorage: lock lost: its lease expired and another instance took it")

// Options configures Open and New.
type Options struct {
	// LockTTL is the lease of a lock (DefaultLockTTL when zero).
	LockTTL time.Duration
	// LockPoll is the wait between attempts of a blocked Lock
	// (DefaultLockPoll when zero).
	LockPoll time.Duration
	// Log receives lease problems; nil discards.
	Log *slog.Logger
}

// Postgres is certmagic's storage in PostgreSQL. It is safe for concurrent
// use by any number of goroutines and processes.
//
// Locks are leases, rows of certmagic_locks with an expiry by the
// database's clock that a goroutine of the holder extends while it holds
// the lock, not session-level advisory locks. When a holder is SIGKILLed
// mid-issuance, both free the lock, but only the lease does so in every
// way a holder can die: an advisory lock dies with its connection, which
// PostgreSQL notices at once for a killed process on a live machine, but
// only after TCP keepalives (two hours by default) when the machine
// itself is gone or cut off, and certmagic would wait that long. A lease
// also needs no connection per held lock (certmagic holds one per name
// being issued, thousands for on-demand hosts at a restart), works
// through transaction-pooling proxies, which break session state, and
// can be seen with a SELECT. The price: a dead holder's lock is released
// DefaultLockTTL later instead of at once, and a holder cut off from the
// database for longer than the lease can lose its lock while it still
// works (Unlock then reports ErrLockLost). certmagic tolerates that
// (Locker's documentation): after taking the lock it checks the storage
// again, so the worst case is a second order, never a broken certificate.
// certmagic's FileStorage makes the same choice with its stale lock files.
//
// Postgres does not implement certmagic's LockLeaseRenewer: certmagic
// would extend a lease by up to 30 days between retries, and a holder
// killed then would block the name for that long. The lease here is kept
// short and extended only while the holder is alive.
type Postgres struct {
	pool    *pgxpool.Pool
	ownPool bool
	name    string // for logs: host and database, never the password
	ttl     time.Duration
	poll    time.Duration
	log     *slog.Logger

	mu    sync.Mutex
	held  map[string]*lease // by lock name
	stats Stats
}

// Stats counts what happened to this instance's locks.
type Stats struct {
	Held      int   // locks held now
	Acquired  int64 // locks taken
	TakenOver int64 // of those, locks taken from a holder whose lease had expired (a dead or stalled instance)
	Lost      int64 // leases found taken over by another instance while held
}

// Stats returns the lock counts of this instance.
func (s *Postgres) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Held = len(s.held)
	return st
}

// lease is a lock this process holds.
type lease struct {
	owner string
	stop  chan struct{} // closed by Unlock
	done  chan struct{} // closed when the refresher ends
	lost  bool          // set by the refresher before done is closed
}

var (
	_ certmagic.Storage   = (*Postgres)(nil)
	_ certmagic.TryLocker = (*Postgres)(nil)
)

// Open connects to the PostgreSQL database of url (postgres://…), applies
// this package's migrations (once, under an advisory lock, when several
// instances start together) and returns the storage. Close closes the
// connections.
func Open(ctx context.Context, url string, o Options) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("certstorage: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("certstorage: %w", err)
	}
	s, err := New(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// New is Open on a pool the caller keeps (and closes after Close).
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Postgres, error) {
	if o.LockTTL <= 0 {
		o.LockTTL = DefaultLockTTL
	}
	if o.LockPoll <= 0 {
		o.LockPoll = DefaultLockPoll
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := pool.Config().ConnConfig
	s := &Postgres{
		pool: pool,
		name: fmt.Sprintf("PostgreSQL:%s:%d/%s", c.Host, c.Port, c.Database),
		ttl:  o.LockTTL,
		poll: o.LockPoll,
		log:  o.Log,
		held: map[string]*lease{},
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations under a session-level advisory
// lock (goose's), so that instances starting together apply each once.
func (s *Postgres) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// Try every 500 ms for up to a minute while another instance migrates.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 120))
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithDisableGlobalRegistry(true), goose.WithTableName(versionTable),
		goose.WithSessionLocker(locker), goose.WithSlog(s.log))
	if err != nil {
		return fmt.Errorf("certstorage: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("certstorage: migrations: %w", err)
	}
	return nil
}

// Close stops refreshing the leases still held (they expire) and, for a
// storage from Open, closes the connections.
func (s *Postgres) Close() {
	s.mu.Lock()
	held := s.held
	s.held = map[string]*lease{}
	s.mu.Unlock()
	for _, l := range held {
		close(l.stop)
		<-l.done
	}
	if s.ownPool {
		s.pool.Close()
	}
}

// String names the storage in certmagic's logs.
func (s *Postgres) String() string { return s.name }

// cleanKey makes key a path without leading, trailing or doubled slashes,
// "." or ".." (as certmagic's FileStorage resolves them).
func cleanKey(key string) (string, error) {
	if !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("certstorage: key %q: not UTF-8 text", key)
	}
	return strings.TrimPrefix(path.Clean("/"+key), "/"), nil
}

// under returns the SQL condition and arguments selecting the keys
// strictly below dir ("" is the root): the range [dir/, dir0), since '0'
// follows '/' and the key column's collation is C (bytes).
func under(dir string, next int) (string, []any) {
	if dir == "" {
		return "true", nil
	}
	return fmt.Sprintf("(key >= $%d AND key < $%d)", next, next+1), []any{dir + "/", dir + "0"}
}

// Store puts value at key, replacing any value there.
func (s *Postgres) Store(ctx context.Context, key string, value []byte) error {
	k, err := cleanKey(key)
	if err != nil {
		return err
	}
	if k == "" {
		return errors.New("certstorage: store: empty key")
	}
	if value == nil {
		value = []byte{} // the column is NOT NULL; an empty file is a file
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO certmagic_data (key, value, modified) VALUES ($1, $2, now())
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified`, k, value)
	if err != nil {
		return fmt.Errorf("certstorage: store %s: %w", k, err)
	}
	return nil
}

// Load returns the value at key; fs.ErrNotExist when there is none.
func (s *Postgres) Load(ctx context.Context, key string) ([]byte, error) {
	k, err := cleanKey(key)
	if err != nil {
		return nil, err
	}
	var v []byte
	err = s.pool.QueryRow(ctx, `SELECT value FROM certmagic_data WHERE key = $1`, k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("certstorage: load %s: %w", k, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("certstorage: load %s: %w", k, err)
	}
	return v, nil
}

// Delete removes key and every key under it. A missing key is not an
// error. The whole storage (the empty key) is never deleted.
func (s *Postgres) Delete(ctx context.Context, key string) error {
	k, err := cleanKey(key)
	if err != nil {
		return err
	}
	if k == "" {
		return errors.New("certstorage: delete: refusing to delete the whole storage")
	}
	cond, args := under(k, 2)
	if _, err := s.pool.Exec(ctx, `DELETE FROM certmagic_data WHERE key = $1 OR `+cond, append([]any{k}, args...)...); err != nil {
		return fmt.Errorf("certstorage: delete %s: %w", k, err)
	}
	return nil
}

// Exists reports whether key is a stored key or a directory of some. An
// error (the database unreachable) reports false, as certmagic expects.
func (s *Postgres) Exists(ctx context.Context, key string) bool {
	k, err := cleanKey(key)
	if err != nil {
		return false
	}
	cond, args := under(k, 2)
	var ok bool
	err = s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM certmagic_data WHERE key = $1 OR `+cond+`)`,
		append([]any{k}, args...)...).Scan(&ok)
	if err != nil {
		s.log.Warn("certstorage: exists", "key", k, "error", err)
		return false
	}
	return ok
}

// Stat describes key: a stored key is terminal, with its size and the
// time it was stored; a directory is not, with the time of its newest
// key. fs.ErrNotExist when it is neither.
func (s *Postgres) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k, err := cleanKey(key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	var (
		size     int64
		modified time.Time
	)
	err = s.pool.QueryRow(ctx, `SELECT octet_length(value), modified FROM certmagic_data WHERE key = $1`, k).Scan(&size, &modified)
	if err == nil {
		return certmagic.KeyInfo{Key: k, Modified: modified, Size: size, IsTerminal: true}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %s: %w", k, err)
	}
	cond, args := under(k, 1)
	var newest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT max(modified) FROM certmagic_data WHERE `+cond, args...).Scan(&newest); err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %s: %w", k, err)
	}
	if newest == nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certstorage: stat %s: %w", k, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: k, Modified: *newest, IsTerminal: false}, nil
}

// List returns the keys under dir, each with dir as its prefix: the
// immediate children (stored keys and directories) when recursive is
// false, else every key and directory below dir. A stored key has no
// children; a dir that is neither fails with fs.ErrNotExist. The keys
// are sorted.
func (s *Postgres) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	d, err := cleanKey(dir)
	if err != nil {
		return nil, err
	}
	cond, args := under(d, 1)
	prefix := ""
	if d != "" {
		prefix = d + "/"
	}
	var q string
	if recursive {
		q = `SELECT key FROM certmagic_data WHERE ` + cond + ` ORDER BY key`
	} else {
		// The first path element below dir: a child key or directory.
		args = append(args, prefix)
		q = fmt.Sprintf(`SELECT DISTINCT $%d || split_part(substr(key, length($%d) + 1), '/', 1) AS child
			FROM certmagic_data WHERE %s ORDER BY child`, len(args), len(args), cond)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("certstorage: list %s: %w", d, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("certstorage: list %s: %w", d, err)
	}
	if len(keys) == 0 {
		if d != "" && s.isKey(ctx, d) {
			return nil, nil
		}
		return nil, fmt.Errorf("certstorage: list %s: %w", d, fs.ErrNotExist)
	}
	if recursive {
		keys = withDirectories(prefix, keys)
	}
	return keys, nil
}

// isKey reports whether k is a stored key.
func (s *Postgres) isKey(ctx context.Context, k string) bool {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM certmagic_data WHERE key = $1)`, k).Scan(&ok)
	return err == nil && ok
}

// withDirectories adds to keys (all below prefix) the directories between
// prefix and each key, as a recursive walk of FileStorage lists them.
func withDirectories(prefix string, keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		rest := strings.TrimPrefix(k, prefix)
		for i := strings.IndexByte(rest, '/'); i >= 0; {
			dir := prefix + rest[:i]
			if !seen[dir] {
				seen[dir] = true
				out = append(out, dir)
			}
			j := strings.IndexByte(rest[i+1:], '/')
			if j < 0 {
				break
			}
			i += 1 + j
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Lock takes the named lock, waiting while another holder's lease is
// live; it fails only when ctx ends or the database fails.
func (s *Postgres) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if ok || err != nil {
			return err
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("certstorage: lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// TryLock takes the named lock if it is free or its lease has expired,
// in one statement, and starts extending the lease.
func (s *Postgres) TryLock(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("certstorage: lock %s: %w", name, err)
	}
	owner, err := newOwner()
	if err != nil {
		return false, err
	}
	// The conflict branch replaces only an expired lease; when the lease
	// is live it updates nothing and returns no row. A replaced row has a
	// non-zero xmax (PostgreSQL's marker of the updating transaction): an
	// expired lease taken over.
	var takenOver bool
	err = s.pool.QueryRow(ctx, `INSERT INTO certmagic_locks (name, owner, expires)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
			WHERE certmagic_locks.expires < now()
		RETURNING xmax <> 0`, name, owner, s.ttl.Seconds()).Scan(&takenOver)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certstorage: lock %s: %w", name, err)
	}
	l := &lease{owner: owner, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	old := s.held[name]
	s.held[name] = l
	s.stats.Acquired++
	if takenOver {
		s.stats.TakenOver++
	}
	s.mu.Unlock()
	if takenOver {
		s.log.Warn("certstorage: took over a lock whose lease had expired (its holder died or stalled)", "lock", name)
	}
	if old != nil {
		// Only after our own lease expired (this process stalled longer
		// than the TTL) can we take a name we still hold.
		close(old.stop)
		<-old.done
	}
	go s.refresh(name, l)
	return true, nil
}

// refresh extends l's lease every quarter of the TTL until Unlock or
// Close, or until the lease turns out to be lost.
func (s *Postgres) refresh(name string, l *lease) {
	defer close(l.done)
	every := s.ttl / 4
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		tag, err := s.pool.Exec(ctx, `UPDATE certmagic_locks SET expires = now() + make_interval(secs => $3)
			WHERE name = $1 AND owner = $2`, name, l.owner, s.ttl.Seconds())
		cancel()
		switch {
		case err != nil:
			// Retried at the next tick; the lease lasts three more.
			s.log.Warn("certstorage: could not extend a lock's lease", "lock", name, "error", err)
		case tag.RowsAffected() == 0:
			l.lost = true
			s.lost(name)
			return
		}
	}
}

// Unlock releases the named lock held by this process. It reports
// ErrLockLost when another holder took the lock after the lease expired
// (that holder keeps it).
func (s *Postgres) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	l := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("certstorage: unlock %s: not held by this process", name)
	}
	close(l.stop)
	<-l.done
	tag, err := s.pool.Exec(ctx, `DELETE FROM certmagic_locks WHERE name = $1 AND owner = $2`, name, l.owner)
	if err != nil {
		return fmt.Errorf("certstorage: unlock %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		if !l.lost {
			s.lost(name)
		}
		return fmt.Errorf("certstorage: unlock %s: %w", name, ErrLockLost)
	}
	return nil
}

// lost counts and logs a lease found taken over while held.
func (s *Postgres) lost(name string) {
	s.mu.Lock()
	s.stats.Lost++
	s.mu.Unlock()
	s.log.Error("certstorage: lock lost: its lease expired and another instance took it", "lock", name)
}

// newOwner returns a random token naming one acquisition of a lock.
func newOwner() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
