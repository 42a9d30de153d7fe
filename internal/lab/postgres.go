package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable holding the postgres:// URL
// of a real PostgreSQL server for tests, as a role that may create
// databases (.ci/run starts one and sets it).
const PostgresEnv = "MAILTLS_TEST_POSTGRES"

// postgresSetupTimeout bounds creating and dropping a test's database.
const postgresSetupTimeout = 30 * time.Second

// NewPostgresDB creates an empty database on the server of PostgresEnv
// for the test, drops it when the test ends, and returns its postgres://
// URL. Each test gets its own database, so tests run in parallel. Without
// PostgresEnv the test skips, or fails when CI is set.
func NewPostgresDB(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("lab: %s is not set (CI is set, so this fails instead of skipping): a real PostgreSQL is needed", PostgresEnv)
		}
		t.Skipf("lab: %s is not set; this test needs a real PostgreSQL", PostgresEnv)
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("lab: %s must be a postgres:// URL: %q", PostgresEnv, admin)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "mailtls_test_" + hex.EncodeToString(b)

	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("lab: postgres: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("lab: postgres: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("lab: postgres: dropping %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		// FORCE ends the connections a test left open (PostgreSQL 13+).
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("lab: postgres: dropping %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
