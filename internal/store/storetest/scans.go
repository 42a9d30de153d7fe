package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// sampleReport is a JSON document shaped like `mailtls check --json`
// output, with evidence, so compression and round trips see realistic
// bytes.
func sampleReport(name, grade string) []byte {
	type rec struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		TTL   int    `json:"ttl"`
		Value string `json:"value"`
	}
	doc := map[string]any{
		"schema_version": 1, "domain": name, "grade": grade, "policy_status": "testing",
		"mx":       []map[string]any{{"host": "mx1." + name, "preference": 10, "policy_match": true}},
		"findings": []map[string]any{{"id": "tlsrpt-missing", "severity": "warning", "subject": "_smtp._tls." + name}},
		"evidence": map[string]any{
			"dns": map[string]any{
				"mta_sts_txt": map[string]any{"name": "_mta-sts." + name, "status": "ok", "records": []rec{{"_mta-sts." + name, "TXT", 300, "v=STSv1; id=20260301T000000"}}},
				"mx":          map[string]any{"name": name, "status": "ok", "records": []rec{{name, "MX", 3600, "10 mx1." + name}}},
			},
			"policy_fetches": []map[string]any{{"url": "https://mta-sts." + name + "/.well-known/mta-sts.txt", "status": 200,
				"body": "version: STSv1\r\nmode: testing\r\nmx: mx1." + name + "\r\nmax_age: 604800\r\n"}},
			"transcript": strings.Repeat("250-mx1."+name+" ESMTP\n", 20),
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func testDomains(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "d@example.test")
	v := newUser(t, s, "e@example.test")
	d := newDomain(t, s, u.ID, "example.com")
	if d.Interval != store.DefaultInterval || d.UserID != u.ID {
		t.Fatalf("AddDomain = %+v", d)
	}
	if want := store.NextScan("example.com", store.DefaultInterval, c.Now()); !d.NextScanAt.Equal(want) {
		t.Fatalf("first NextScanAt = %v, want %v", d.NextScanAt, want)
	}
	_, err := s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "example.com"})
	wantErr(t, "same domain twice in one account", err, store.ErrConflict)
	// Another account may save the same name.
	dv := newDomain(t, s, v.ID, "example.com")
	if got := must[store.Domain](t)(s.FindDomain(ctx(t), v.ID, "example.com")); got.ID != dv.ID {
		t.Fatalf("FindDomain = %+v, want %+v", got, dv)
	}
	_, err = s.FindDomain(ctx(t), u.ID, "example.org")
	wantErr(t, "FindDomain of an unsaved name", err, store.ErrNotFound)

	for _, n := range []string{"b.example", "a.example", "d.example", "c.example"} {
		newDomain(t, s, u.ID, n)
	}
	var names []string
	after := ""
	for {
		page := must[[]store.Domain](t)(s.ListDomains(ctx(t), u.ID, after, 2))
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			names = append(names, d.Name)
		}
		after = page[len(page)-1].Name
	}
	if got := strings.Join(names, " "); got != "a.example b.example c.example d.example example.com" {
		t.Fatalf("ListDomains pages = %s", got)
	}

	wantErr(t, "another account deletes the domain", s.DeleteDomain(ctx(t), v.ID, d.ID), store.ErrNotFound)
	wantErr(t, "another account mutes the domain", s.Mute(ctx(t), v.ID, d.ID, c.Now().Add(time.Hour)), store.ErrNotFound)
	next := c.Now().Add(6 * time.Hour)
	check(t, s.SetInterval(ctx(t), u.ID, d.ID, 6*time.Hour, next))
	got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID))
	if got.Interval != 6*time.Hour {
		t.Fatalf("Interval = %v", got.Interval)
	}
	sameTime(t, "NextScanAt", got.NextScanAt, next)
	check(t, s.Mute(ctx(t), u.ID, d.ID, time.Time{}))
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); got.Muted(c.Now()) {
		t.Fatal("unmuted domain is muted")
	}

	// "Save" adopts the anonymous scan the user was looking at.
	anon := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{Name: "saved.example", Trigger: store.TriggerAnonymous, ExpiresAt: c.Now().Add(time.Hour)}))
	if anon.UserID != 0 || anon.DomainID != 0 {
		t.Fatalf("anonymous scan = %+v", anon)
	}
	_, err = s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "other.example", FirstScan: anon.ID})
	wantErr(t, "adopting a scan of another name", err, store.ErrNotFound)
	if _, err := s.FindDomain(ctx(t), u.ID, "other.example"); !errorsIs(err, store.ErrNotFound) {
		t.Fatal("a failed adoption left the domain saved")
	}
	saved := must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "saved.example", FirstScan: anon.ID}))
	sc := must[store.Scan](t)(s.GetScan(ctx(t), anon.ID))
	if sc.DomainID != saved.ID || sc.UserID != u.ID || !sc.ExpiresAt.IsZero() {
		t.Fatalf("adopted scan = %+v", sc)
	}

	check(t, s.DeleteDomain(ctx(t), u.ID, saved.ID))
	_, err = s.GetScan(ctx(t), anon.ID)
	wantErr(t, "scan of a deleted domain", err, store.ErrNotFound)
	if got := must[store.Domain](t)(s.GetDomain(ctx(t), dv.ID)); got.UserID != v.ID {
		t.Fatal("deleting one account's domain touched another's")
	}
}

func testScans(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "scan@example.test")
	d := newDomain(t, s, u.ID, "example.net")
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerManual}))
	if sc.Name != "example.net" || sc.UserID != u.ID || sc.State != store.ScanQueued || sc.Trigger != store.TriggerManual {
		t.Fatalf("CreateScan = %+v", sc)
	}
	_, err := s.CreateScan(ctx(t), store.NewScan{DomainID: 424242, Trigger: store.TriggerManual})
	wantErr(t, "scan of an unknown domain", err, store.ErrNotFound)
	_, err = s.CreateScan(ctx(t), store.NewScan{Name: "x.example", Trigger: store.TriggerAnonymous})
	if err == nil {
		t.Fatal("anonymous scan without expiry accepted")
	}
	c.Advance(time.Second)
	check(t, s.StartScan(ctx(t), sc.ID))
	wantErr(t, "starting twice", s.StartScan(ctx(t), sc.ID), store.ErrConflict)
	wantErr(t, "starting an unknown scan", s.StartScan(ctx(t), 999999), store.ErrNotFound)
	c.Advance(3 * time.Second)

	report := sampleReport("example.net", "B")
	findings := []store.Finding{
		{ID: "mx-cert-expired", Severity: "error", Component: "mx", Subject: "mx1.example.net", Message: "expired"},
		{ID: "tlsrpt-missing", Severity: "warning", Component: "tls-rpt", Subject: "_smtp._tls.example.net", Message: "no record"},
		{ID: "policy-max-age-short", Severity: "info", Component: "policy", Subject: "max_age", Message: "one day"},
		{ID: "mx-starttls-missing", Severity: "error", Component: "mx", Subject: "mx2.example.net", Message: "no STARTTLS"},
	}
	done := must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{
		State: store.ScanDone, ScannerVersion: "v1.2.3", CatalogVersion: "cat-7", ReportSchema: 1,
		Grade: "B", PolicyStatus: "testing", Report: report, Findings: findings,
	}))
	if done.State != store.ScanDone || done.Grade != "B" || done.Errors != 2 || done.Warnings != 1 || done.Infos != 1 ||
		done.ScannerVersion != "v1.2.3" || done.CatalogVersion != "cat-7" || done.ReportSchema != 1 || done.Pruned {
		t.Fatalf("FinishScan = %+v", done)
	}
	sameTime(t, "StartedAt", done.StartedAt, start.Add(time.Second))
	sameTime(t, "FinishedAt", done.FinishedAt, c.Now())
	if done.ReportSize != len(report) || done.ReportSHA256 != sha256.Sum256(report) || done.StoredSize <= 0 {
		t.Fatalf("report size %d stored %d sha %x", done.ReportSize, done.StoredSize, done.ReportSHA256)
	}
	got := must[[]byte](t)(s.ScanReport(ctx(t), sc.ID))
	if !bytes.Equal(got, report) {
		t.Fatalf("ScanReport differs from what was stored:\n%s\n%s", got, report)
	}
	gotF := must[[]store.Finding](t)(s.ScanFindings(ctx(t), sc.ID))
	if fmt.Sprint(gotF) != fmt.Sprint(findings) {
		t.Fatalf("ScanFindings = %v, want %v (in order)", gotF, findings)
	}
	if again := must[store.Scan](t)(s.GetScan(ctx(t), sc.ID)); again != done {
		t.Fatalf("GetScan = %+v, want %+v", again, done)
	}
	_, err = s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone})
	wantErr(t, "finishing twice", err, store.ErrConflict)

	// A failed scan keeps its reason and has no report.
	f := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	f = must[store.Scan](t)(s.FinishScan(ctx(t), f.ID, store.ScanResult{State: store.ScanFailed, Error: "resolver unreachable"}))
	if f.State != store.ScanFailed || f.Error != "resolver unreachable" || f.ReportSize != 0 {
		t.Fatalf("failed scan = %+v", f)
	}
	_, err = s.ScanReport(ctx(t), f.ID)
	wantErr(t, "report of a failed scan", err, store.ErrNotFound)
	_, err = s.GetScan(ctx(t), 999999)
	wantErr(t, "unknown scan", err, store.ErrNotFound)
	_, err = s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanRunning})
	if err == nil {
		t.Fatal("FinishScan accepted state running")
	}
}

// History pages newest first, by creation time then id, without gaps or
// repeats, also when many scans share one creation time.
func testScanPagination(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "page@example.test")
	d := newDomain(t, s, u.ID, "page.example")
	other := newDomain(t, s, u.ID, "other.example")
	var want []store.ScanID
	for i := range 23 {
		if i%4 == 0 {
			c.Advance(time.Minute) // groups of equal creation times
		}
		sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
		want = append([]store.ScanID{sc.ID}, want...)
		must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: other.ID, Trigger: store.TriggerSchedule}))
	}
	var got []store.ScanID
	cur := store.Cursor("")
	pages := 0
	for {
		page, next := func() ([]store.Scan, store.Cursor) {
			p, n, err := s.ListScans(ctx(t), d.ID, cur, 5)
			check(t, err)
			return p, n
		}()
		pages++
		for _, sc := range page {
			if sc.DomainID != d.ID {
				t.Fatalf("ListScans returned scan %d of domain %d", sc.ID, sc.DomainID)
			}
			got = append(got, sc.ID)
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("ListScans does not end")
		}
		cur = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ListScans pages = %v\nwant newest first %v", got, want)
	}
	if pages != 5 {
		t.Fatalf("23 scans in pages of 5 took %d pages, want 5", pages)
	}
	if _, _, err := s.ListScans(ctx(t), d.ID, "garbage", 5); err == nil {
		t.Fatal("a malformed cursor was accepted")
	}
}

func testScanEvents(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{Name: "ev.example", Trigger: store.TriggerAnonymous, ExpiresAt: start.Add(time.Hour)}))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := s.AppendScanEvent(ctx(t), sc.ID, "stage", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	evs := must[[]store.ScanEvent](t)(s.ScanEventsAfter(ctx(t), sc.ID, 0, 100))
	if len(evs) != 20 {
		t.Fatalf("%d events, want 20", len(evs))
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) || e.ScanID != sc.ID || e.Kind != "stage" {
			t.Fatalf("event %d = %+v; want seq %d (gapless, in order)", i, e, i+1)
		}
	}
	// Replay after Last-Event-ID 15.
	evs = must[[]store.ScanEvent](t)(s.ScanEventsAfter(ctx(t), sc.ID, 15, 3))
	if len(evs) != 3 || evs[0].Seq != 16 || evs[2].Seq != 18 {
		t.Fatalf("events after 15 = %+v", evs)
	}
	if _, err := s.AppendScanEvent(ctx(t), 999999, "x", nil); err == nil {
		t.Fatal("event for an unknown scan accepted")
	}
}

func testDashboard(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "dash@example.test")
	v := newUser(t, s, "other@example.test")
	a := newDomain(t, s, u.ID, "a.example")
	b := newDomain(t, s, u.ID, "b.example")
	newDomain(t, s, u.ID, "c.example") // never scanned
	newDomain(t, s, v.ID, "a.example")
	doneScan(t, s, a.ID, "A")
	c.Advance(time.Hour)
	doneScan(t, s, a.ID, "C", store.Finding{ID: "x", Severity: "error", Subject: "s"})
	c.Advance(time.Hour)
	// A newer scan that failed or is running does not replace the last result.
	must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: a.ID, Trigger: store.TriggerSchedule}))
	bs := doneScan(t, s, b.ID, "A+")

	rows := must[[]store.DomainStatus](t)(s.Dashboard(ctx(t), u.ID))
	if len(rows) != 3 {
		t.Fatalf("Dashboard has %d rows, want 3", len(rows))
	}
	ra, rb, rc := rows[0], rows[1], rows[2]
	if ra.Name != "a.example" || ra.Last == nil || ra.Last.Grade != "C" || ra.Last.Errors != 1 || !ra.HasPrevious || ra.PreviousGrade != "A" {
		t.Fatalf("a.example row = %+v last %+v", ra, ra.Last)
	}
	if rb.Name != "b.example" || rb.Last == nil || rb.Last.ID != bs.ID || rb.HasPrevious {
		t.Fatalf("b.example row = %+v last %+v", rb, rb.Last)
	}
	if rc.Name != "c.example" || rc.Last != nil {
		t.Fatalf("c.example row = %+v", rc)
	}
	for _, r := range rows {
		sameSummary(t, s, u.ID, r)
	}
	if rows := must[[]store.DomainStatus](t)(s.Dashboard(ctx(t), v.ID)); len(rows) != 1 || rows[0].Last != nil {
		t.Fatalf("the other account's dashboard = %+v", rows)
	}
}

// testDashboardSummary: the dashboard, read from the summary kept with
// each scan, says what the history says: the latest two finished scans by
// creation time (whatever order they finished in), the scan a saved
// result page brought along, what retention left; and the counts of open
// problems stored with the alert state.
func testDashboardSummary(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "summary@example.test")
	row := func(name string) store.DomainStatus {
		t.Helper()
		for _, r := range must[[]store.DomainStatus](t)(s.Dashboard(ctx(t), u.ID)) {
			if r.Name != name {
				continue
			}
			// The history agrees: its first two finished scans.
			scans, _, err := s.ListScans(ctx(t), r.ID, "", 100)
			check(t, err)
			var done []store.Scan
			for _, sc := range scans {
				if sc.State == store.ScanDone {
					done = append(done, sc)
				}
			}
			switch {
			case len(done) == 0 && r.Last != nil, len(done) > 0 && (r.Last == nil || r.Last.ID != done[0].ID),
				len(done) > 1 != r.HasPrevious, len(done) > 1 && r.PreviousGrade != done[1].Grade:
				t.Fatalf("%s: dashboard %+v (last %+v) disagrees with the history %+v", name, r, r.Last, done)
			}
			sameSummary(t, s, u.ID, r)
			return r
		}
		t.Fatalf("%s is not on the dashboard", name)
		return store.DomainStatus{}
	}
	finish := func(sc store.Scan, state store.ScanState, grade string) {
		t.Helper()
		must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: state, Grade: grade, Report: sampleReport(sc.Name, grade)}))
	}

	// Two scans finishing in the opposite order of their creation.
	d := newDomain(t, s, u.ID, "order.example")
	early := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerManual}))
	c.Advance(time.Minute)
	late := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	finish(late, store.ScanDone, "B")
	if r := row(d.Name); r.Last.Grade != "B" || r.HasPrevious {
		t.Fatalf("after one scan: %+v", r)
	}
	c.Advance(time.Minute)
	finish(early, store.ScanDone, "A")
	if r := row(d.Name); r.Last.ID != late.ID || r.PreviousGrade != "A" {
		t.Fatalf("the older scan finishing last replaced the newer: last %+v previous %q", r.Last, r.PreviousGrade)
	}
	// A failed scan changes nothing.
	c.Advance(time.Minute)
	finish(must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule})), store.ScanFailed, "")
	if r := row(d.Name); r.Last.ID != late.ID {
		t.Fatalf("a failed scan became the last: %+v", r.Last)
	}

	// "Save" on a result page: the anonymous scan is the domain's first.
	anon := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{Name: "saved.example", Trigger: store.TriggerAnonymous, ExpiresAt: c.Now().Add(time.Hour)}))
	finish(anon, store.ScanDone, "C")
	must[store.Domain](t)(s.AddDomain(ctx(t), store.NewDomain{UserID: u.ID, Name: "saved.example", FirstScan: anon.ID}))
	if r := row("saved.example"); r.Last == nil || r.Last.ID != anon.ID || r.Last.Grade != "C" {
		t.Fatalf("the adopted scan is not the last: %+v", r.Last)
	}

	// Retention deletes old scans; the dashboard shows what is left.
	old := newDomain(t, s, u.ID, "old.example")
	doneScan(t, s, old.ID, "D")
	c.Advance(time.Hour)
	kept := doneScan(t, s, old.ID, "A")
	c.Advance(400 * 24 * time.Hour)
	must[store.PruneStats](t)(s.Prune(ctx(t), store.Retention{FullScans: 100 * 24 * time.Hour, Scans: 200 * 24 * time.Hour}))
	if r := row(old.Name); r.Last == nil || r.Last.ID != kept.ID || r.HasPrevious {
		t.Fatalf("after retention: %+v last %+v", r, r.Last)
	}

	// Open problems are counted with the alert state.
	if r := row(d.Name); !r.OpenCounted || r.OpenErrors != 0 || r.OpenWarnings != 0 {
		t.Fatalf("a domain without alert state: %+v", r)
	}
	// (Every domain is due after the 400 days.)
	must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w", 10, time.Minute))
	sc := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{DomainID: d.ID, Trigger: store.TriggerSchedule}))
	must[store.Scan](t)(s.FinishScan(ctx(t), sc.ID, store.ScanResult{State: store.ScanDone, Grade: "D", Report: sampleReport(d.Name, "D"),
		Release: &store.Release{Owner: "w", Next: c.Now().Add(time.Hour), AlertState: []byte(`{"v":1}`), OpenErrors: 2, OpenWarnings: 1}}))
	if r := row(d.Name); !r.OpenCounted || r.OpenErrors != 2 || r.OpenWarnings != 1 || r.Last.ID != sc.ID {
		t.Fatalf("open problems: %+v", r)
	}
	if g := must[store.Domain](t)(s.GetDomain(ctx(t), d.ID)); !g.OpenCounted || g.OpenErrors != 2 || g.OpenWarnings != 1 {
		t.Fatalf("GetDomain: %+v", g)
	}
	// A release without a state keeps state and counts.
	c.Advance(2 * time.Hour)
	must[[]store.ClaimedDomain](t)(s.ClaimDueDomains(ctx(t), "w", 10, time.Minute))
	check(t, s.ReleaseDomain(ctx(t), d.ID, "w", c.Now().Add(time.Hour)))
	if r := row(d.Name); !r.OpenCounted || r.OpenErrors != 2 || r.OpenWarnings != 1 {
		t.Fatalf("a release without state changed the counts: %+v", r)
	}
}

// sameSummary checks that DomainSummaries has the dashboard row r.
func sameSummary(t *testing.T, s store.Store, user store.UserID, r store.DomainStatus) {
	t.Helper()
	for _, d := range must[[]store.DomainSummary](t)(s.DomainSummaries(ctx(t), user)) {
		if d.ID != r.ID {
			continue
		}
		want := store.DomainSummary{ID: r.ID, Name: r.Name, NextScanAt: r.NextScanAt, MutedUntil: r.MutedUntil, OpenErrors: r.OpenErrors,
			OpenWarnings: r.OpenWarnings, OpenCounted: r.OpenCounted, PreviousGrade: r.PreviousGrade, HasPrevious: r.HasPrevious}
		if !r.OpenCounted {
			want.AlertState = r.AlertState
		}
		if r.Last != nil {
			want.LastScan, want.LastScanAt, want.LastGrade = r.Last.ID, r.Last.CreatedAt, r.Last.Grade
		}
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("DomainSummaries row %+v, want %+v", d, want)
		}
		return
	}
	t.Fatalf("%s is not in DomainSummaries", r.Name)
}

func testShares(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	u := newUser(t, s, "share@example.test")
	v := newUser(t, s, "nosy@example.test")
	d := newDomain(t, s, u.ID, "share.example")
	sc := doneScan(t, s, d.ID, "A")
	sh := must[store.Share](t)(s.CreateShare(ctx(t), u.ID, sc.ID, 7*24*time.Hour))
	if len(sh.ID) < 26 || sh.ScanID != sc.ID || sh.UserID != u.ID {
		t.Fatalf("CreateShare = %+v; want an id of at least 128 bits", sh)
	}
	sameTime(t, "ExpiresAt", sh.ExpiresAt, c.Now().Add(7*24*time.Hour))
	sh2 := must[store.Share](t)(s.CreateShare(ctx(t), u.ID, sc.ID, time.Hour))
	if sh2.ID == sh.ID {
		t.Fatal("two shares got the same id")
	}
	_, err := s.CreateShare(ctx(t), v.ID, sc.ID, time.Hour)
	wantErr(t, "sharing another account's scan", err, store.ErrNotFound)
	anon := must[store.Scan](t)(s.CreateScan(ctx(t), store.NewScan{Name: "a.example", Trigger: store.TriggerAnonymous, ExpiresAt: c.Now().Add(time.Hour)}))
	_, err = s.CreateShare(ctx(t), u.ID, anon.ID, time.Hour)
	wantErr(t, "sharing an anonymous scan", err, store.ErrNotFound)

	if got := must[store.Share](t)(s.GetShare(ctx(t), sh.ID)); got != sh {
		t.Fatalf("GetShare = %+v, want %+v", got, sh)
	}
	_, err = s.GetShare(ctx(t), strings.ToUpper(sh.ID))
	wantErr(t, "share id in another case", err, store.ErrNotFound)
	if list := must[[]store.Share](t)(s.ListShares(ctx(t), u.ID)); len(list) != 2 {
		t.Fatalf("ListShares = %+v", list)
	}
	c.Advance(time.Hour)
	_, err = s.GetShare(ctx(t), sh2.ID)
	wantErr(t, "share at its expiry", err, store.ErrNotFound)
	if list := must[[]store.Share](t)(s.ListShares(ctx(t), u.ID)); len(list) != 1 {
		t.Fatalf("ListShares lists expired shares: %+v", list)
	}
	wantErr(t, "deleting another account's share", s.DeleteShare(ctx(t), v.ID, sh.ID), store.ErrNotFound)
	check(t, s.DeleteShare(ctx(t), u.ID, sh.ID))
	_, err = s.GetShare(ctx(t), sh.ID)
	wantErr(t, "deleted share", err, store.ErrNotFound)
}
