package sqlstore

import (
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// pgTables lists the application's tables in creation order.
func pgTables(ctx context.Context, db *sql.DB) ([]string, error) { return tables(ctx, Postgres, db) }

// rawPostgres is a database/sql pool on url without the store.
func rawPostgres(t testing.TB, url string) *sql.DB {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	raw := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { raw.Close(); pool.Close() })
	return raw
}

func openPostgres(t testing.TB, url string, now store.Clock) *DB {
	t.Helper()
	db, err := OpenPostgres(context.Background(), url, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func postgresHarness(t *testing.T) storetest.Harness {
	versions, err := Versions(Postgres)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Harness{
		Open: func(t testing.TB, now store.Clock) (store.Store, *sql.DB) {
			db := openPostgres(t, lab.NewPostgresDB(t), now)
			return db, db.SQL()
		},
		OpenAt: func(t testing.TB, version int64) (*sql.DB, func(store.Clock) store.Store) {
			url := lab.NewPostgresDB(t)
			raw := rawPostgres(t, url)
			if _, err := Migrate(context.Background(), Postgres, raw, version, nil); err != nil {
				t.Fatal(err)
			}
			return raw, func(now store.Clock) store.Store {
				return openPostgres(t, url, now)
			}
		},
		Versions: versions,
		Tables:   pgTables,
		AfterFixture: func(ctx context.Context, db *sql.DB) error {
			return ResetSequences(ctx, Postgres, db)
		},
		FixtureDir: filepath.Join("..", "storetest", "testdata", "schema"),
	}
}

// TestConformancePostgres runs the store's conformance suite, unchanged,
// on a real PostgreSQL (lab.PostgresEnv), each test on a database of its
// own.
func TestConformancePostgres(t *testing.T) {
	storetest.Run(t, postgresHarness(t))
}

// Instances started together on an empty database migrate it once, under
// the advisory lock, and all open it without an error.
func TestPostgresConcurrentMigration(t *testing.T) {
	url := lab.NewPostgresDB(t)
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			db, err := OpenPostgres(t.Context(), url, Options{})
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	raw := rawPostgres(t, url)
	// Each migration applied once: one row per version in goose's table.
	versions, err := Versions(Postgres)
	if err != nil {
		t.Fatal(err)
	}
	var rows, distinct int
	if err := raw.QueryRowContext(t.Context(), "SELECT COUNT(*), COUNT(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0").
		Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(versions) || distinct != len(versions) {
		t.Fatalf("goose_db_version has %d rows (%d versions), want %d", rows, distinct, len(versions))
	}
	tables, err := pgTables(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 23 {
		t.Fatalf("%d tables: %s", len(tables), strings.Join(tables, ", "))
	}
}

// A PostgreSQL store is not copied by Backup: pg_dump does that.
func TestPostgresBackupNamesPgDump(t *testing.T) {
	db := openPostgres(t, lab.NewPostgresDB(t), nil)
	err := db.Backup(t.Context(), filepath.Join(t.TempDir(), "copy.db"))
	if err != ErrUsePgDump {
		t.Fatalf("Backup = %v, want ErrUsePgDump", err)
	}
	if !strings.Contains(err.Error(), "pg_dump") {
		t.Fatal(err)
	}
	if st, ok := db.PoolStats(); !ok || st.MaxConns <= 0 {
		t.Fatalf("PoolStats = %+v, %v", st, ok)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://mailtls:s3cret@db.example:5432/mailtls?sslmode=require": "postgres://mailtls:xxxxx@db.example:5432/mailtls?sslmode=require",
		"postgres://mailtls@db.example/mailtls?password=s3cret":             "postgres://mailtls@db.example/mailtls?password=xxxxx",
		"postgres://db.example/mailtls":                                     "postgres://db.example/mailtls",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Redact("postgres://u:p@[bad"); strings.Contains(got, "p@") {
		t.Errorf("Redact kept a password: %q", got)
	}
}

// A server that accepts connections but never answers fails the open
// within the connect timeout instead of hanging serve's start.
func TestPostgresStalledServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	start := time.Now()
	_, err = OpenPostgres(t.Context(), "postgres://mailtls:pw@"+ln.Addr().String()+"/mailtls?sslmode=disable&connect_timeout=1", Options{})
	if err == nil || time.Since(start) > 20*time.Second {
		t.Fatalf("open of a silent server: %v after %v", err, time.Since(start))
	}
	if strings.Contains(err.Error(), ":pw@") {
		t.Fatalf("error shows the password: %v", err)
	}
}

// TestAnonScansPostgres runs the anonymous scans' conformance suite on a
// real PostgreSQL, as two instances (two pools) on one database.
func TestAnonScansPostgres(t *testing.T) {
	storetest.RunAnonScans(t, func(t testing.TB) (store.AnonScans, store.AnonScans) {
		url := lab.NewPostgresDB(t)
		var out [2]store.AnonScans
		for i := range out {
			var err error
			if out[i], err = openPostgres(t, url, nil).AnonScans(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		return out[0], out[1]
	})
}
