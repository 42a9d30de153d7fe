package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
)

// TestAnonClientKeys: what the database holds of a client (docs/config.md,
// "Privacy"): never its address, only a keyed hash, and only while its scan
// is live and its rate is counted. Both engines.
func TestAnonClientKeys(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var db *DB
			if engine == "sqlite" {
				db, _ = openTemp(t, nil)
			} else {
				db = openPostgres(t, lab.NewPostgresDB(t), nil)
			}
			ctx := t.Context()
			a, err := db.AnonScans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
			const addr = "192.0.2.44"
			lim := store.AnonLimits{Client: addr, Rate: 1, Burst: 5, Concurrent: 2, Now: t0}
			if _, err := a.BeginAnonScan(ctx, store.AnonScan{ID: "k1", Domain: "k.test", State: "queued", Owner: "A",
				Heartbeat: t0, Created: t0}, lim); err != nil {
				t.Fatal(err)
			}
			held := func(q string) []string {
				t.Helper()
				rows, err := db.SQL().QueryContext(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				out, err := collect(rows, func(r interface{ Scan(...any) error }) (string, error) {
					var s string
					return s, r.Scan(&s)
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			jobs, clients := held(`SELECT client FROM anonscan_jobs`), held(`SELECT client FROM anonscan_clients`)
			if len(jobs) != 1 || len(clients) != 1 || jobs[0] != clients[0] || len(jobs[0]) != 32 || jobs[0] == addr {
				t.Fatalf("held while live: jobs %q, clients %q; want one 32-digit hash in both", jobs, clients)
			}
			// A second instance of the database keys the hash alike.
			b, err := db.AnonScans(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if h := b.clientHash(addr); h != jobs[0] {
				t.Fatalf("the other instance's hash %s, want %s", h, jobs[0])
			}
			if err := a.FinishAnonScan(ctx, store.AnonScan{ID: "k1", Domain: "k.test", State: "done", Final: true, Owner: "A",
				Created: t0, Finished: t0, Expires: t0.Add(time.Hour), Record: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			if jobs := held(`SELECT client FROM anonscan_jobs`); len(jobs) != 1 || jobs[0] != "" {
				t.Fatalf("a final scan keeps its client: %q", jobs)
			}
			// The bucket is full again a second after the one scan.
			if _, err := a.DeleteExpiredAnonScans(ctx, t0.Add(999*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if c := held(`SELECT client FROM anonscan_clients`); len(c) != 1 {
				t.Fatalf("a bucket not yet full was forgotten: %q", c)
			}
			if _, err := a.DeleteExpiredAnonScans(ctx, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if c := held(`SELECT client FROM anonscan_clients`); len(c) != 0 {
				t.Fatalf("a full bucket is kept: %q", c)
			}
		})
	}
}

// TestAnonClientColumnAdded: anonymous scans' tables made by a version
// without limits get the client column when an instance opens them. Both
// engines.
func TestAnonClientColumnAdded(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var db *DB
			if engine == "sqlite" {
				db, _ = openTemp(t, nil)
			} else {
				db = openPostgres(t, lab.NewPostgresDB(t), nil)
			}
			ctx := t.Context()
			if _, err := db.SQL().ExecContext(ctx, `CREATE TABLE anonscan_jobs (id TEXT PRIMARY KEY, domain TEXT NOT NULL, smtp INTEGER NOT NULL,
				state TEXT NOT NULL, final INTEGER NOT NULL, owner TEXT NOT NULL, heartbeat BIGINT NOT NULL, created BIGINT NOT NULL,
				started BIGINT, finished BIGINT, expires BIGINT, error TEXT NOT NULL DEFAULT '', record TEXT)`); err != nil {
				t.Fatal(err)
			}
			a, err := db.AnonScans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
			lim := store.AnonLimits{Client: "192.0.2.1", Concurrent: 1, Now: t0}
			if _, err := a.BeginAnonScan(ctx, store.AnonScan{ID: "k1", Domain: "k.test", State: "queued", Owner: "A", Heartbeat: t0, Created: t0}, lim); err != nil {
				t.Fatal(err)
			}
			if _, err := db.AnonScans(ctx); err != nil { // and again: nothing to add
				t.Fatal(err)
			}
			var le *store.AnonLimitError
			if _, err := a.BeginAnonScan(ctx, store.AnonScan{ID: "k2", Domain: "k2.test", State: "queued", Owner: "A", Heartbeat: t0, Created: t0}, lim); !errors.As(err, &le) {
				t.Fatalf("second live scan of a client limited to one: %v", err)
			}
		})
	}
}
