package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// dumpRows reads every row of table as text, sorted (the engines order
// text differently, so rows are compared as sets).
func dumpRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT * FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			switch x := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "%s=blob:%s|", cols[i], base64.StdEncoding.EncodeToString(x))
			default:
				fmt.Fprintf(&b, "%s=%T:%v|", cols[i], v, v)
			}
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A populated SQLite store copied into PostgreSQL: every table's rows are
// equal value for value (ids and times kept), the copy reads back through
// the store, and new rows get new ids after the copied ones.
func TestCopySQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Now())
	src, err := Open(ctx, filepath.Join(t.TempDir(), "store.db"), Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	storetest.Populate(t, src, c)
	// Volume beyond the fixture: ids with gaps (a deleted user), many rows.
	u, err := src.CreateUser(ctx, "bulk@example.test", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := src.CreateUser(ctx, "gone@example.test", "x")
	if err := src.DeleteUser(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		d, err := src.AddDomain(ctx, store.NewDomain{UserID: u.ID, Name: fmt.Sprintf("d%03d.example", i)})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := src.CreateScan(ctx, store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.FinishScan(ctx, sc.ID, store.ScanResult{State: store.ScanDone, Grade: "A", Report: []byte(`{"n":` + fmt.Sprint(i) + `}`),
			Findings: []store.Finding{{ID: "f", Severity: "info", Subject: d.Name, Message: "ünïcode ✓"}}}); err != nil {
			t.Fatal(err)
		}
	}

	// The target database also holds another component's table (the
	// host role's certificates may share it).
	dbURL := lab.NewPostgresDB(t)
	other := rawPostgres(t, dbURL)
	if _, err := other.ExecContext(ctx, "CREATE TABLE certmagic_data (key TEXT PRIMARY KEY, value BYTEA)"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, "INSERT INTO certmagic_data VALUES ('acme/account.json', '\\x7b7d')"); err != nil {
		t.Fatal(err)
	}
	dst := openPostgres(t, dbURL, c.Now)
	counts, err := CopyAll(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	names, err := src.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != len(names) {
		t.Fatalf("copied %d tables of %d", len(counts), len(names))
	}
	empty := 0
	for _, tc := range counts {
		a, b := dumpRows(t, src.SQL(), tc.Table), dumpRows(t, dst.SQL(), tc.Table)
		if int64(len(a)) != tc.Rows || !slices.Equal(a, b) {
			t.Errorf("table %s: %d rows in SQLite, %d in PostgreSQL (copied %d); first differing rows:\n%v\n%v", tc.Table, len(a), len(b), tc.Rows, first(a, b), first(b, a))
		}
		if tc.Rows == 0 {
			empty++
		}
	}
	// The fixture fills every table but the TLS-RPT failure rows of a
	// report without failure details... so check it copied something real.
	if empty > 1 {
		t.Errorf("%d tables were empty: the test copies too little (%v)", empty, counts)
	}
	// A second copy into the now full database is refused and changes
	// nothing.
	if _, err := CopyAll(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "empty database") {
		t.Fatalf("copy into a full database: %v", err)
	}
	// New rows continue after the copied ids.
	nu, err := dst.CreateUser(ctx, "new@example.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	if nu.ID <= gone.ID {
		t.Fatalf("new user id %d does not follow the copied ids (last %d)", nu.ID, gone.ID)
	}
	storetest.Verify(t, dst, c)
}

// first is a's first row that b lacks.
func first(a, b []string) string {
	for _, r := range a {
		if !slices.Contains(b, r) {
			return r
		}
	}
	return "(none)"
}
