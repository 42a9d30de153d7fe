package sqlstore

import (
	"context"
	"database/sql"
	"flag"
	"path/filepath"
	"testing"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the fixture of the latest schema version")

// sqliteTables lists the application's tables in creation order.
func sqliteTables(ctx context.Context, db *sql.DB) ([]string, error) { return tables(ctx, SQLite, db) }

func sqliteHarness(t *testing.T) storetest.Harness {
	versions, err := Versions(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Harness{
		Open: func(t testing.TB, now store.Clock) (store.Store, *sql.DB) {
			db, err := Open(context.Background(), filepath.Join(t.TempDir(), "store.db"), Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db, db.SQL()
		},
		OpenAt: func(t testing.TB, version int64) (*sql.DB, func(store.Clock) store.Store) {
			path := filepath.Join(t.TempDir(), "store.db")
			raw, err := sql.Open("sqlite", dsn(path, false))
			if err != nil {
				t.Fatal(err)
			}
			raw.SetMaxOpenConns(1)
			t.Cleanup(func() { raw.Close() })
			if _, err := Migrate(context.Background(), SQLite, raw, version, nil); err != nil {
				t.Fatal(err)
			}
			return raw, func(now store.Clock) store.Store {
				raw.Close()
				db, err := Open(context.Background(), path, Options{Now: now})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		},
		Versions:   versions,
		Tables:     sqliteTables,
		FixtureDir: filepath.Join("..", "storetest", "testdata", "schema"),
		Update:     *update,
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, sqliteHarness(t))
}

// TestAnonScans runs the anonymous scans' conformance suite on one SQLite
// file opened twice, as two processes on one machine would.
func TestAnonScans(t *testing.T) {
	storetest.RunAnonScans(t, func(t testing.TB) (store.AnonScans, store.AnonScans) {
		path := filepath.Join(t.TempDir(), "store.db")
		var out [2]store.AnonScans
		for i := range out {
			db, err := Open(context.Background(), path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if out[i], err = db.AnonScans(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		return out[0], out[1]
	})
}
