// Package storetest is the conformance suite of store.Store: every
// implementation (SQLite and PostgreSQL) runs Run unchanged, in the
// manner of River's driver test suite. It checks behaviour callers rely on:
// uniqueness, cascading deletes, UTC time round trips, lease exclusivity
// under concurrent claimers, lease expiry and rescue, a missed run after
// downtime running once, outbox retries and exactly-once delivery claims,
// session, share and token expiry, pagination order, retention, and
// TLS-RPT deduplication, conflicts and provenance (RFC 8460 §3), and
// migration from empty and from a fixture of every earlier schema version.
package storetest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// Harness is what an implementation gives the suite.
type Harness struct {
	// Open returns a new, empty store at the latest schema version whose
	// clock is now, and the database under it (for counting rows). The
	// store is closed when the test ends.
	Open func(t testing.TB, now store.Clock) (store.Store, *sql.DB)
	// OpenAt returns a new, empty database migrated only up to version,
	// and a function that migrates it to the latest version and opens the
	// store on it.
	OpenAt func(t testing.TB, version int64) (raw *sql.DB, upgrade func(now store.Clock) store.Store)
	// Versions are every schema version, ascending.
	Versions []int64
	// Tables lists the application's tables in creation order (not the
	// migration bookkeeping).
	Tables func(ctx context.Context, db *sql.DB) ([]string, error)
	// AfterFixture, if set, runs after fixture rows were inserted with
	// explicit ids (PostgreSQL: move identity sequences past them).
	AfterFixture func(ctx context.Context, db *sql.DB) error
	// FixtureDir is where Update writes the fixture of the latest
	// version (the suite reads fixtures from its own embedded copy).
	FixtureDir string
	Update     bool
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		f    func(*testing.T, Harness)
	}{
		{"TimeRoundTrip", testTimeRoundTrip},
		{"Users", testUsers},
		{"Sessions", testSessions},
		{"APITokens", testAPITokens},
		{"OneTimeTokens", testOneTimeTokens},
		{"Domains", testDomains},
		{"Scans", testScans},
		{"ScanPagination", testScanPagination},
		{"ScanEvents", testScanEvents},
		{"Dashboard", testDashboard},
		{"DashboardSummary", testDashboardSummary},
		{"Shares", testShares},
		{"NamedLeases", testNamedLeases},
		{"LeaseExclusivity", testLeaseExclusivity},
		{"LeaseExpiryAndRescue", testLeaseRescue},
		{"MissedRunRunsOnce", testMissedRun},
		{"Backlog", testBacklog},
		{"RescanRequest", testRescanRequest},
		{"AlertState", testAlertState},
		{"ChannelDigest", testChannelDigest},
		{"Channels", testChannels},
		{"OutboxRetry", testOutboxRetry},
		{"OutboxExactlyOnceClaims", testOutboxConcurrent},
		{"OutboxInScanTransaction", testOutboxInScan},
		{"TLSRPTDedupe", testTLSRPTDedupe},
		{"TLSRPTConcurrentCopies", testTLSRPTConcurrentCopies},
		{"TLSRPTList", testTLSRPTList},
		{"TLSRPTRetention", testTLSRPTRetention},
		{"TLSRPTSummary", testTLSRPTSummary},
		{"HostPolicies", testHostPolicies},
		{"HostPolicyIDsConverge", testHostPolicyIDsConverge},
		{"Verifications", testVerifications},
		{"CascadingDelete", testCascade},
		{"Retention", testRetention},
		{"MigrateFromEmpty", testMigrateEmpty},
		{"MigrateFromEveryVersion", testMigrateFixtures},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, h) })
	}
}

// Clock is a settable clock for stores under test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// start is the suite's usual starting time: not UTC and not on a
// microsecond, so every stored time shows whether it was normalised.
var start = time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

// open is h.Open with a fresh clock at start.
func open(t *testing.T, h Harness) (store.Store, *Clock, *sql.DB) {
	t.Helper()
	c := NewClock(start)
	s, db := h.Open(t, c.Now)
	return s, c, db
}

func ctx(t *testing.T) context.Context { return t.Context() }

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errorsIs(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	want = store.UTC(want)
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("%s = %v, want %v in UTC", what, got, want)
	}
}

func newUser(t *testing.T, s store.Store, email string) store.User {
	t.Helper()
	return must[store.User](t)(s.CreateUser(ctx(t), email, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"))
}

func newDomain(t *testing.T, s store.Store, u store.UserID, name string) store.Domain {
	t.Helper()
	return must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u, Name: name}))
}

// doneScan records a finished scan of d with a report and findings.
func doneScan(t *testing.T, s store.Store, d store.DomainID, grade string, findings ...store.Finding) store.Scan {
	t.Helper()
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d, Trigger: store.TriggerSchedule}))
	return must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{
		State: store.ScanDone, ScannerVersion: "v-test", CatalogVersion: "c-test", ReportSchema: 1,
		Grade: grade, PolicyStatus: "testing", Report: sampleReport(sc.Name, grade), Findings: findings,
	}))
}
