package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// mailtls store migrate moves a populated SQLite store into PostgreSQL:
// every table's count is printed, the data reads back through the store,
// a second run into the now full database is refused, and the reports
// and user commands read the PostgreSQL store with --store URL.
func TestStoreMigrate(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "mailtls.db")
	c := storetest.NewClock(time.Now())
	src, err := sqlstore.Open(ctx, file, sqlstore.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Populate(t, src, c)
	// Every table's count, as the command must print it.
	var want []string
	tables, err := src.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		var n int
		if err := src.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tb).Scan(&n); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s  %d", tb, n))
	}
	src.Close()
	url := lab.NewPostgresDB(t)

	r := run(t, "store", "migrate", "--from", "sqlite:"+file, "--to", url)
	if r.code != 0 || !strings.Contains(r.stdout, "copied ") || !strings.Contains(r.stdout, fmt.Sprintf("in %d tables", len(tables))) {
		t.Fatalf("migrate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := strings.Join(strings.Fields(r.stdout), "  ") + "  "
	for _, w := range want {
		if !strings.Contains(out, w+"  ") {
			t.Errorf("migrate output lacks %q:\n%s", w, r.stdout)
		}
	}
	dst, err := sqlstore.OpenPostgres(ctx, url, sqlstore.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	a, err := dst.GetUserByEmail(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := dst.Dashboard(ctx, a.ID); err != nil || len(rows) != 1 || rows[0].Last == nil || rows[0].Last.Grade != "A" {
		t.Fatalf("dashboard after the migration: %+v %v", rows, err)
	}

	r = run(t, "reports", "list", "--store", url, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, "2026-01-14_example.com") {
		t.Errorf("reports list on PostgreSQL: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "user", "list", "--store", url); r.code != 0 || !strings.Contains(r.stdout, "alice@example.test") {
		t.Errorf("user list on PostgreSQL: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "store", "migrate", "--from", "sqlite:"+file, "--to", url); r.code != 1 || !strings.Contains(r.stderr, "empty database") {
		t.Errorf("second migrate: %d\n%s", r.code, r.stderr)
	}
	if n, err := dst.CountTLSRPTReports(ctx, store.TLSRPTQuery{}); err != nil || n[store.ReportCounted] != 1 {
		t.Errorf("the refused copy changed the target: %v %v", n, err)
	}
}

func TestStoreMigrateUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.db")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"store"}, 2, "Usage: mailtls store migrate"},
		{[]string{"store", "copy"}, 2, `unknown command "copy"`},
		{[]string{"store", "migrate", "--from", "/x.db", "--to", "postgres://db.example/m"}, 2, "--from sqlite:FILE"},
		{[]string{"store", "migrate", "--from", "sqlite:/x.db", "--to", "mysql://db.example/m"}, 2, "--to postgres://URL"},
		// A missing source is not created (it would copy nothing).
		{[]string{"store", "migrate", "--from", "sqlite:" + missing, "--to", "postgres://db.example/m"}, 1, "no such file"},
		{[]string{"store", "migrate", "--to", "postgres://db.example/m"}, 2, "--certs DIR or both"},
		{[]string{"store", "migrate", "--certs", missing, "--to", "postgres://db.example/m"}, 1, "no such file"},
		// PostgreSQL is backed up with pg_dump; the password is not echoed.
		{[]string{"backup", "--store", "postgres://mailtls:s3cret@db.example/mailtls", filepath.Join(t.TempDir(), "copy.db")}, 1, "pg_dump --format=custom"},
	} {
		r := run(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("%v: %d\n%s", tt.args, r.code, r.stderr)
		}
	}
}
