package storetest

import (
	"crypto/sha256"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// populate gives user email one of everything the store keeps, and
// returns the user.
func populate(t *testing.T, s store.Store, c *Clock, email string) store.User {
	t.Helper()
	u := newUser(t, s, email)
	check(t, s.CommitSession(ctx(t), "session-"+email, u.ID, []byte("session data"), c.Now().Add(24*time.Hour)))
	must[store.APIToken](t)(s.CreateAPIToken(ctx(t), store.NewAPIToken{UserID: u.ID, Name: "ci", Prefix: "mtls_" + email[:4],
		Hash: sha256.Sum256([]byte("token-" + email)), Scopes: []store.Scope{store.ScopeRead}}))
	check(t, s.CreateOneTimeToken(ctx(t), store.PurposeVerifyEmail, sha256.Sum256([]byte("verify-"+email)), u.ID, email, time.Hour))
	d := newDomain(t, s, u.ID, "example.com")
	must[store.DomainVerification](t)(s.StartVerification(ctx(t), u.ID, d.ID, "token-"+email))
	sc := doneScan(t, s, d.ID, "B", store.Finding{ID: "tlsrpt-missing", Severity: "warning", Component: "tls-rpt", Subject: "_smtp._tls.example.com", Message: "none"})
	must[store.ScanEvent](t)(s.AppendScanEvent(ctx(t), sc.ID, "done", []byte(`{}`)))
	must[store.Share](t)(s.CreateShare(ctx(t), u.ID, sc.ID, time.Hour))
	ch := must[store.Channel](t)(s.CreateChannel(ctx(t), store.NewChannel{UserID: u.ID, Kind: store.ChannelWebhook, Target: "https://hooks.example/" + email, Secret: []byte("s")}))
	ids := must[[]store.MessageID](t)(s.Enqueue(ctx(t), store.NewMessage{ChannelID: ch.ID, DomainID: d.ID, Kind: "alert", Key: "k", Payload: []byte("p")},
		store.NewMessage{ChannelID: ch.ID, Kind: "test", Payload: []byte("t")}))
	owner := "populate-" + email
	for _, m := range must[[]store.Message](t)(s.ClaimMessages(ctx(t), owner, 10, time.Minute)) {
		if m.ID == ids[1] {
			check(t, s.MarkDelivered(ctx(t), m.ID, owner, "HTTP 204"))
		} else {
			check(t, s.MarkFailed(ctx(t), m.ID, owner, "HTTP 500", "", c.Now().Add(time.Minute)))
		}
	}
	return u
}

// counts is the number of rows of every table.
func counts(t *testing.T, h Harness, db *sql.DB) map[string]int {
	t.Helper()
	tables := must[[]string](t)(h.Tables(ctx(t), db))
	out := map[string]int{}
	for _, tb := range tables {
		var n int
		check(t, db.QueryRowContext(ctx(t), "SELECT COUNT(*) FROM "+tb).Scan(&n))
		out[tb] = n
	}
	return out
}

// unowned are the tables no account owns: named leases, and TLS-RPT
// reports, which belong to a domain name whoever saved it (`mailtls
// reports delete DOMAIN` deletes them with DeleteTLSRPTDomain), and the
// policy host's state, which belongs to the host configuration.
var unowned = map[string]bool{"leases": true, "host_policies": true, "tlsrpt_reports": true, "tlsrpt_policies": true, "tlsrpt_receipts": true,
	"tlsrpt_days": true, "tlsrpt_day_failures": true, "tlsrpt_day_domains": true, "tlsrpt_overrides": true}

// Deleting an account deletes every row it owns and nothing else.
func testCascade(t *testing.T, h Harness) {
	s, c, db := open(t, h)
	b := populate(t, s, c, "bob@example.test")
	must[bool](t)(s.AcquireLease(ctx(t), "janitor", "x", time.Hour)) // owned by no account
	before := counts(t, h, db)
	a := populate(t, s, c, "alice@example.test")
	during := counts(t, h, db)
	for tb, n := range during {
		if unowned[tb] {
			continue
		}
		if n == before[tb] {
			t.Errorf("populate left table %s empty for the second user; the cascade test would not see it", tb)
		}
	}
	check(t, s.DeleteUser(ctx(t), a.ID))
	after := counts(t, h, db)
	if !maps.Equal(before, after) {
		var diff []string
		for _, tb := range slices.Sorted(maps.Keys(after)) {
			if before[tb] != after[tb] {
				diff = append(diff, fmt.Sprintf("%s: %d rows, want %d", tb, after[tb], before[tb]))
			}
		}
		t.Fatalf("after deleting the account: %v", diff)
	}
	// Bob's things still work.
	if _, found, _ := s.FindSession(ctx(t), "session-bob@example.test"); !found {
		t.Fatal("bob's session went with alice")
	}
	if rows := must[[]store.DomainStatus](t)(s.Dashboard(ctx(t), b.ID)); len(rows) != 1 || rows[0].Last == nil {
		t.Fatalf("bob's dashboard = %+v", rows)
	}
}

func testRetention(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "ret@example.test")
	d := newDomain(t, s, u.ID, "ret.example")
	quiet := newDomain(t, s, u.ID, "quiet.example")
	old := doneScan(t, s, quiet.ID, "A") // a domain's only scan, soon very old
	var scans []store.Scan
	for range 20 {
		c.Advance(3 * 24 * time.Hour)
		sc := doneScan(t, s, d.ID, "A", store.Finding{ID: "f", Severity: "info", Subject: "s"})
		must[store.ScanEvent](t)(s.AppendScanEvent(ctx(t), sc.ID, "done", nil))
		scans = append(scans, sc)
	}
	// Day 60 now; scans are 3 days apart, the newest is 0 days old.
	anon := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{Name: "anon.example", Trigger: store.TriggerAnonymous, ExpiresAt: c.Now().Add(time.Hour)}))
	stale := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	check(t, s.StartScan(ctx(t), stale.ID))
	check(t, s.CommitSession(ctx(t), "short", u.ID, []byte("x"), c.Now().Add(30*time.Minute)))
	check(t, s.CommitSession(ctx(t), "long", u.ID, []byte("x"), c.Now().Add(48*time.Hour)))
	c.Advance(2 * time.Hour)

	r := store.Retention{FullScans: 20 * 24 * time.Hour, KeepFull: 8, Scans: 45 * 24 * time.Hour, StaleScan: time.Hour}
	st := must[store.PruneStats](t)(s.Prune(ctx(t), r))
	// Scans 60, 57 … 3 days old: the 8 newest stay full (including all
	// younger than 20 days: 6 of them), 45 days and older are deleted
	// (ages 57, 54, 51, 48, 45: 5), the rest are summaries (7).
	if st.AnonymousScans != 1 || st.StaleScans != 1 || st.Sessions != 1 || st.ScansDeleted != 5 || st.Summarised != 7 {
		t.Fatalf("Prune = %+v", st)
	}
	for i, sc := range scans {
		age := time.Duration(20-1-i) * 3 * 24 * time.Hour
		got, err := s.GetScan(ctx(t), sc.ID)
		switch {
		case age >= 45*24*time.Hour:
			wantErr(t, fmt.Sprintf("scan aged %v", age), err, store.ErrNotFound)
		case i >= 20-8:
			check(t, err)
			if got.Pruned {
				t.Fatalf("one of the 8 latest scans (aged %v) was summarised", age)
			}
			must[[]byte](t)(s.ScanReport(ctx(t), sc.ID))
		default:
			check(t, err)
			if !got.Pruned || got.Grade != "A" || got.ReportSize == 0 {
				t.Fatalf("scan aged %v = %+v; want a summary that keeps grade and size", age, got)
			}
			_, err := s.ScanReport(ctx(t), sc.ID)
			wantErr(t, "report of a summary", err, store.ErrPruned)
			if f := must[[]store.Finding](t)(s.ScanFindings(ctx(t), sc.ID)); len(f) != 1 {
				t.Fatalf("summary lost its findings: %v", f)
			}
			if ev := must[[]store.ScanEvent](t)(s.ScanEventsAfter(ctx(t), sc.ID, 0, 10)); len(ev) != 0 {
				t.Fatalf("summary kept its events: %v", ev)
			}
		}
	}
	// A domain's last scan survives any age, and keeps its report as one
	// of the KeepFull latest.
	if got := must[store.Scan](t)(s.GetScan(ctx(t), old.ID)); got.Pruned {
		t.Fatal("the only scan of a domain was summarised")
	}
	_, err := s.GetScan(ctx(t), anon.ID)
	wantErr(t, "expired anonymous scan", err, store.ErrNotFound)
	if got := must[store.Scan](t)(s.GetScan(ctx(t), stale.ID)); got.State != store.ScanFailed || got.Error == "" {
		t.Fatalf("stale scan = %+v", got)
	}
	if _, found, _ := s.FindSession(ctx(t), "long"); !found {
		t.Fatal("a live session was pruned")
	}
	// Pruning again changes nothing.
	if st := must[store.PruneStats](t)(s.Prune(ctx(t), r)); st != (store.PruneStats{}) {
		t.Fatalf("second Prune = %+v", st)
	}
	// Negative durations keep forever.
	c.Advance(10 * 365 * 24 * time.Hour)
	st = must[store.PruneStats](t)(s.Prune(ctx(t), store.Retention{FullScans: -1, Scans: -1, StaleScan: -1, Outbox: -1, UsedTokens: -1}))
	if st.Summarised != 0 || st.ScansDeleted != 0 {
		t.Fatalf("Prune with retention forever = %+v", st)
	}
}

func testMigrateEmpty(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	v := must[int64](t)(s.SchemaVersion(ctx(t)))
	if want := h.Versions[len(h.Versions)-1]; v != want {
		t.Fatalf("SchemaVersion = %d, want %d", v, want)
	}
}
