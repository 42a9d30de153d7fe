package web

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// annsStore is a store with one user, ann, whose session cookie and
// bearer token are "ann" (with scopes), and a harness serving its pages.
func annsStore(t *testing.T, scopes []store.Scope) (*sqlstore.DB, *storetest.Clock, store.User, *harness) {
	t.Helper()
	clock := storetest.NewClock(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, err := st.CreateUser(t.Context(), "ann@example.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: tokenUsers{"ann": {ann.ID, scopes}}, Now: clock.Now}})
	return st, clock, ann, h
}

// TestDashboardOpenProblems: the dashboard's "open problems" column shows
// the counts stored with each domain's alert state (pending problems are
// not open yet), and decodes a state stored before the store kept them.
func TestDashboardOpenProblems(t *testing.T) {
	st, clock, ann, h := annsStore(t, nil)
	add := func(name string) store.Domain {
		d, err := st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: name, NextScanAt: clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	counted, legacy := add("counted.example"), add("legacy.example")
	add("quiet.example")

	// A monitoring scan stores the state with its counts.
	state := alert.State{Version: alert.StateVersion, Baselined: true, Problems: []alert.Problem{
		{Key: "a", ID: "mx-not-covered", Severity: "error", Status: alert.Open},
		{Key: "b", ID: "smtp-unreachable", Severity: "error", Status: alert.Pending},
	}}
	if _, err := st.ClaimDueDomains(t.Context(), "w", 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	sc, err := st.CreateScan(t.Context(), store.NewScan{DomainID: counted.ID, Trigger: store.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	rel := &store.Release{Owner: "w", Next: clock.Now().Add(time.Hour), AlertState: state.Marshal()}
	rel.OpenErrors, rel.OpenWarnings = state.OpenCounts()
	if _, err := st.FinishScan(t.Context(), sc.ID, store.ScanResult{State: store.ScanDone, Grade: "D", Report: []byte(`{}`), Release: rel}); err != nil {
		t.Fatal(err)
	}
	// A state written before schema version 6 has no counts.
	old := alert.State{Version: alert.StateVersion, Problems: []alert.Problem{
		{Key: "c", Severity: "warning", Status: alert.Open}, {Key: "d", Severity: "info", Status: alert.Open},
	}}
	if _, err := st.SQL().Exec("UPDATE domains SET alert_state = $1, open_errors = NULL, open_warnings = NULL WHERE id = $2", old.Marshal(), legacy.ID); err != nil {
		t.Fatal(err)
	}

	r := h.do("GET", "/domains", "", "", "Cookie", "session=ann")
	body := string(r.body)
	row := func(name string) string {
		_, after, ok := strings.Cut(body, ">"+name+"</a>")
		row, _, _ := strings.Cut(after, "</tr>")
		if !ok {
			t.Fatalf("%s is not on the dashboard:\n%s", name, body)
		}
		return row
	}
	for name, want := range map[string]string{"counted.example": "1 error<", "legacy.example": "2 warnings<", "quiet.example": ">none<"} {
		if got := row(name); !strings.Contains(got, want) {
			t.Errorf("%s: want %q in its row:\n%s", name, want, got)
		}
	}
	if !strings.Contains(body, "3 saved domains") {
		t.Errorf("dashboard: %d\n%s", r.StatusCode, body)
	}
}
