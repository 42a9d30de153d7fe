package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// sampleTLSRPT is a one-day report (RFC 8460 §4.4) with an sts and a
// tlsa policy, as Microsoft sends for DANE domains.
func sampleTLSRPT(org, id, domain string, day time.Time, failed int64) *tlsrpt.Report {
	return &tlsrpt.Report{
		OrganizationName: org, ContactInfo: "tlsrpt@" + org, ReportID: id,
		Start: day, End: day.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{
			{Type: tlsrpt.PolicySTS, Domain: domain, Strings: []string{"version: STSv1", "mode: testing", "mx: mx1." + domain, "max_age: 604800"},
				MXPatterns: []string{"mx1." + domain}, MXSource: "policy-string", Successful: 100, Failed: failed, DetailsFailed: failed,
				Failures: []tlsrpt.FailureDetail{{ResultType: "certificate-expired", SendingMTAIP: "192.0.2.7", ReceivingMXHostname: "mx1." + domain, FailedSessions: failed}}},
			{Type: tlsrpt.PolicyTLSA, Domain: domain, Strings: []string{"3 1 1 0123abcd"}, Successful: 100, Failed: failed, DetailsFailed: failed},
		},
	}
}

func rawJSON(t *testing.T, r *tlsrpt.Report, indent string) []byte {
	t.Helper()
	b, err := json.MarshalIndent(r, "", indent)
	check(t, err)
	return b
}

// Copies of one report arriving at once (by mail at one instance, over
// HTTPS at another) are one report with every receipt, never an error: a
// failed intake would make the sender retry or drop it. And two reports
// of one key with other content arriving at once: one is counted, the
// other a conflict (RFC 8460 §3).
func testTLSRPTConcurrentCopies(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	day := time.Date(2026, 2, 27, 0, 0, 0, 0, time.UTC)
	r := sampleTLSRPT("google.com", "2026-02-27_example.com", "example.com", day, 2)
	other := sampleTLSRPT("google.com", "2026-02-27_example.com", "example.com", day, 9)
	const n = 8
	var wg sync.WaitGroup
	outcomes := make([]store.ReportOutcome, n)
	for i := range n {
		wg.Go(func() {
			rep := r
			if i == n-1 {
				rep = other
			}
			_, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: rep, Receipt: store.ReportReceipt{Channel: "smtp", MessageID: fmt.Sprint(i)}})
			if err != nil {
				t.Errorf("copy %d: %v", i, err)
			}
			outcomes[i] = out
		})
	}
	wg.Wait()
	reps, _, err := s.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "example.com"})
	check(t, err)
	if len(reps) != 2 {
		t.Fatalf("%d reports stored, want 2 (one per content): %+v", len(reps), reps)
	}
	states := map[store.ReportState]int{}
	receipts := 0
	for _, rp := range reps {
		states[rp.State]++
		receipts += len(rp.Receipts)
	}
	if states[store.ReportCounted] != 1 || states[store.ReportConflict] != 1 || receipts != n {
		t.Fatalf("states %v, %d receipts; want one counted, one conflict, %d receipts", states, receipts, n)
	}
	news := 0
	for _, o := range outcomes[:n-1] {
		if o == store.OutcomeNew {
			news++
		}
	}
	if news != 1 {
		t.Fatalf("outcomes of the same copy = %v; want one new, the rest duplicates", outcomes[:n-1])
	}
}

func testTLSRPTDedupe(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	day := time.Date(2026, 2, 27, 0, 0, 0, 0, time.UTC)
	r := sampleTLSRPT("google.com", "2026-02-27_example.com", "example.com", day, 2)

	// RFC 8460 §3: the same report over HTTPS, by mail and from a file is
	// one report with three receipts.
	first, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: r, Raw: rawJSON(t, r, ""),
		Receipt: store.ReportReceipt{Channel: "https", ClientIP: "198.51.100.4"}})
	check(t, err)
	if out != store.OutcomeNew || first.State != store.ReportCounted || len(first.Receipts) != 1 {
		t.Fatalf("first arrival: %s %+v", out, first)
	}
	c.Advance(time.Hour)
	// The same content, differently encoded and with parser notes.
	r2 := *r
	r2.Notes = []tlsrpt.Note{{Code: tlsrpt.NoteDateNoZone, Text: "no zone"}}
	dup, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: &r2, Raw: rawJSON(t, &r2, "  "),
		Receipt: store.ReportReceipt{Channel: "smtp", DKIM: "pass", DKIMDomain: "google.com", MessageID: "<1@google.com>"}})
	check(t, err)
	if out != store.OutcomeDuplicate || dup.ID != first.ID || len(dup.Receipts) != 2 {
		t.Fatalf("second arrival: %s %+v", out, dup)
	}
	_, out, err = s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: r, Receipt: store.ReportReceipt{Channel: "file", FileName: "google.json.gz"}})
	check(t, err)
	got := must[store.StoredTLSRPT](t)(s.GetTLSRPTReport(ctx(t), first.ID, true))
	var chans []string
	for _, rc := range got.Receipts {
		chans = append(chans, rc.Channel)
	}
	if out != store.OutcomeDuplicate || strings.Join(chans, " ") != "https smtp file" || got.Receipts[1].DKIM != "pass" || got.Receipts[0].ClientIP != "198.51.100.4" {
		t.Fatalf("receipts = %+v", got.Receipts)
	}
	sameTime(t, "second receipt", got.Receipts[1].ReceivedAt, c.Now())
	if string(got.Raw) != string(rawJSON(t, r, "")) || got.RawSize != len(got.Raw) {
		t.Fatalf("raw bytes not kept as first received: %q", got.Raw)
	}
	if a, b := rawJSON(t, got.Report, ""), rawJSON(t, r, ""); string(a) != string(b) {
		t.Fatalf("parsed report changed in the store:\n%s\n%s", a, b)
	}

	// Same key, other numbers: a visible conflict; the first stays counted.
	other := sampleTLSRPT("google.com", "2026-02-27_example.com", "example.com", day, 5)
	conf, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: other, Receipt: store.ReportReceipt{Channel: "https"}})
	check(t, err)
	if out != store.OutcomeNew || conf.State != store.ReportConflict || !strings.Contains(conf.Reason, fmt.Sprint(first.ID)) {
		t.Fatalf("conflicting arrival: %s %+v", out, conf)
	}
	counted, _, err := s.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "example.com", States: []store.ReportState{store.ReportCounted}})
	check(t, err)
	if len(counted) != 1 || counted[0].ID != first.ID || counted[0].Report.Policies[0].Failed != 2 {
		t.Fatalf("counted reports = %+v", counted)
	}
	all, _, err := s.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "example.com"})
	check(t, err)
	if len(all) != 2 {
		t.Fatalf("all reports = %d, want the counted one and the conflict", len(all))
	}

	// Without a valid DKIM signature a mailed report is kept aside
	// (RFC 8460 §3); a valid copy later makes it count.
	ms := sampleTLSRPT("microsoft.com", "133000000000000000+example.com", "example.com", day, 0)
	ign, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: ms, Ignore: "no valid DKIM signature",
		Receipt: store.ReportReceipt{Channel: "smtp", DKIM: "fail"}})
	check(t, err)
	if out != store.OutcomeNew || ign.State != store.ReportIgnored || ign.Reason != "no valid DKIM signature" {
		t.Fatalf("unsigned report: %s %+v", out, ign)
	}
	prom, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: ms, Receipt: store.ReportReceipt{Channel: "smtp", DKIM: "pass"}})
	check(t, err)
	if out != store.OutcomePromoted || prom.ID != ign.ID || prom.State != store.ReportCounted || len(prom.Receipts) != 2 {
		t.Fatalf("signed copy: %s %+v", out, prom)
	}
	// An unsigned copy whose key another report took meanwhile stays
	// aside even when a signed copy follows: one counted report per key.
	x := sampleTLSRPT("mail.ru", "uuid-1", "example.com", day, 1)
	y := sampleTLSRPT("mail.ru", "uuid-1", "example.com", day, 4)
	xi, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: x, Ignore: "no valid DKIM signature"})
	check(t, err)
	yc, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: y})
	check(t, err)
	xs, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: x, Receipt: store.ReportReceipt{DKIM: "pass"}})
	check(t, err)
	if yc.State != store.ReportCounted || out != store.OutcomeDuplicate || xs.ID != xi.ID || xs.State != store.ReportIgnored {
		t.Fatalf("signed copy of a report whose key is taken: %s %+v (counted one %+v)", out, xs, yc)
	}
	// A report about an unconfigured domain is held.
	held, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: sampleTLSRPT("google.com", "x", "stranger.example", day, 0), Hold: true,
		Receipt: store.ReportReceipt{Channel: "https"}})
	check(t, err)
	if held.State != store.ReportHeld {
		t.Fatalf("held report = %+v", held)
	}
	if _, err := s.GetTLSRPTReport(ctx(t), 999999, false); !errorsIs(err, store.ErrNotFound) {
		t.Fatalf("unknown report: %v", err)
	}
}

// Reports come back by domain and overlapping window, oldest first, in
// pages without gaps or repeats.
func testTLSRPTList(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	day0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []store.ReportID
	for d := range 10 {
		for _, org := range []string{"google.com", "microsoft.com", "mail.ru"} {
			st, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{
				Report: sampleTLSRPT(org, fmt.Sprint(org, d), "list.example", day0.AddDate(0, 0, d), 0), Receipt: store.ReportReceipt{Channel: "file"}})
			check(t, err)
			if d >= 3 && d < 7 {
				want = append(want, st.ID)
			}
		}
		check(t, func() error {
			_, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: sampleTLSRPT("google.com", fmt.Sprint("o", d), "other.example", day0.AddDate(0, 0, d), 0)})
			return err
		}())
	}
	q := store.TLSRPTQuery{Domain: "list.example", From: day0.AddDate(0, 0, 3), To: day0.AddDate(0, 0, 7), Limit: 5}
	var got []store.ReportID
	for pages := 0; ; pages++ {
		page, next, err := s.ListTLSRPTReports(ctx(t), q)
		check(t, err)
		for _, r := range page {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("pages do not end")
		}
		q.After = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("window of days 3–6: %v, want %v", got, want)
	}
	n := must[int](t)(s.DeleteTLSRPTDomain(ctx(t), "list.example"))
	if n != 30 {
		t.Fatalf("DeleteTLSRPTDomain deleted %d, want 30", n)
	}
	if left, _, _ := s.ListTLSRPTReports(ctx(t), store.TLSRPTQuery{}); len(left) != 10 {
		t.Fatalf("%d reports left, want the other domain's 10", len(left))
	}
}

func testTLSRPTRetention(t *testing.T, h Harness) {
	s, c, _ := open(t, h)
	day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	old := sampleTLSRPT("google.com", "old", "r.example", day.AddDate(0, 0, -400), 0)
	recent := sampleTLSRPT("google.com", "recent", "r.example", day.AddDate(0, 0, -1), 0)
	c.Set(day.AddDate(0, 0, -30))
	a, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: old, Raw: []byte(`{"old":1}`)})
	check(t, err)
	c.Set(day)
	b, _, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: recent, Raw: []byte(`{"recent":1}`)})
	check(t, err)
	st := must[store.PruneStats](t)(s.Prune(ctx(t), store.Retention{TLSRPTRaw: 7 * 24 * time.Hour, TLSRPTReports: 365 * 24 * time.Hour}))
	if st.TLSRPTReports != 1 || st.TLSRPTRaw != 0 {
		t.Fatalf("Prune = %+v", st)
	}
	_, err = s.GetTLSRPTReport(ctx(t), a.ID, false)
	wantErr(t, "report past retention", err, store.ErrNotFound)
	c.Advance(8 * 24 * time.Hour)
	st = must[store.PruneStats](t)(s.Prune(ctx(t), store.Retention{TLSRPTRaw: 7 * 24 * time.Hour, TLSRPTReports: 365 * 24 * time.Hour}))
	got := must[store.StoredTLSRPT](t)(s.GetTLSRPTReport(ctx(t), b.ID, true))
	if st.TLSRPTRaw != 1 || !got.RawPruned || got.Raw != nil || got.Report.ReportID != "recent" {
		t.Fatalf("after raw retention: %+v, report %+v", st, got)
	}
}

// The summary of a window sums the counted reports' day rows exactly as
// tlsrptagg.Aggregate sums the reports themselves; conflicts, ignored and
// held reports stay out; held reports count once their domain is
// configured.
func testTLSRPTSummary(t *testing.T, h Harness) {
	s, _, _ := open(t, h)
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var counted []*tlsrpt.Report
	add := func(r *tlsrpt.Report, n store.NewTLSRPTReport) store.StoredTLSRPT {
		t.Helper()
		n.Report = r
		st, _, err := s.AddTLSRPTReport(ctx(t), n)
		check(t, err)
		if st.State == store.ReportCounted {
			counted = append(counted, r)
		}
		return st
	}
	for d := range 20 {
		for _, org := range []string{"google.com", "microsoft.com"} {
			add(sampleTLSRPT(org, fmt.Sprint(org, d), "sum.example", day0.AddDate(0, 0, d), int64(d%3)), store.NewTLSRPTReport{})
		}
	}
	// A week-long report, attributed to the days it overlaps (B-3).
	week := sampleTLSRPT("weekly.example", "w1", "sum.example", day0.AddDate(0, 0, 4), 7)
	week.End = day0.AddDate(0, 0, 11).Add(-time.Second)
	add(week, store.NewTLSRPTReport{})
	// None of these counts.
	if st := add(sampleTLSRPT("google.com", "google.com3", "sum.example", day0.AddDate(0, 0, 3), 50), store.NewTLSRPTReport{}); st.State != store.ReportConflict {
		t.Fatalf("conflict = %+v", st)
	}
	add(sampleTLSRPT("forger.example", "f1", "sum.example", day0.AddDate(0, 0, 5), 90), store.NewTLSRPTReport{Ignore: "no valid DKIM signature"})
	held := add(sampleTLSRPT("google.com", "held1", "sum.example", day0.AddDate(0, 0, 6), 9), store.NewTLSRPTReport{Hold: true})
	add(sampleTLSRPT("google.com", "other", "other.example", day0.AddDate(0, 0, 6), 9), store.NewTLSRPTReport{})
	counted = counted[:len(counted)-1] // other.example's

	// Promoted by a signed copy: counts from then on.
	promoted := sampleTLSRPT("yahoo.com", "y1", "sum.example", day0.AddDate(0, 0, 8), 4)
	add(promoted, store.NewTLSRPTReport{Ignore: "no valid DKIM signature"})
	if _, out, err := s.AddTLSRPTReport(ctx(t), store.NewTLSRPTReport{Report: promoted}); err != nil || out != store.OutcomePromoted {
		t.Fatalf("signed copy: %s %v", out, err)
	}
	counted = append(counted, promoted)

	from, to := day0.AddDate(0, 0, 5), day0.AddDate(0, 0, 15)
	wantSumsIn := func(from, to time.Time) *tlsrptagg.Sums {
		t.Helper()
		out := func(d time.Time) bool { return !from.IsZero() && d.Before(from) || !to.IsZero() && !d.Before(to) }
		all := tlsrptagg.Aggregate(counted)
		all.Rows = slices.DeleteFunc(all.Rows, func(r tlsrptagg.Row) bool { return out(r.Day) })
		all.DomainRows = slices.DeleteFunc(all.DomainRows, func(r tlsrptagg.DomainRow) bool { return out(r.Day) })
		return all.Sums("sum.example")
	}
	wantSums := func() *tlsrptagg.Sums { t.Helper(); return wantSumsIn(from, to) }
	// The store's sums (TLSRPTSums, in the database's query language)
	// are the reference sums of the same reports: conflicts, ignored and
	// held reports stay out, sts and tlsa are never added (B-1), the
	// week is split over its days (B-3), and cut by the window it counts
	// as one report.
	sums := must[*tlsrptagg.Sums](t)(s.TLSRPTSums(ctx(t), "sum.example", from, to))
	if a, b := sumsText(t, sums), sumsText(t, wantSums()); a != b {
		t.Fatalf("store sums differ from Aggregate:\n%s\nwant\n%s", a, b)
	}
	// Long windows (a store may read them another way) and no window.
	for _, w := range [][2]time.Time{{from, from.AddDate(1, 0, 0)}, {day0.AddDate(0, 0, 6), day0.AddDate(0, 6, 0)}, {}, {from, time.Time{}}} {
		got := must[*tlsrptagg.Sums](t)(s.TLSRPTSums(ctx(t), "sum.example", w[0], w[1]))
		if a, b := sumsText(t, got), sumsText(t, wantSumsIn(w[0], w[1])); a != b {
			t.Fatalf("store sums from %s to %s differ from Aggregate:\n%s\nwant\n%s", w[0], w[1], a, b)
		}
	}
	if len(sums.Types) != 2 || sums.Types[0].Type != tlsrpt.PolicySTS || sums.Types[1].Type != tlsrpt.PolicyTLSA ||
		sums.Types[0].Successful != 2*10*100+15+5*14+100 || sums.Types[0].ByOrganization["forger.example"].Failed != 0 ||
		sums.Sessions != sums.Types[0].Successful+sums.Types[0].Failed || sums.Reports != 2*10+1+1 || len(sums.Reporters) != 4 {
		t.Fatalf("sums %s", sumsText(t, sums))
	}
	if none := must[*tlsrptagg.Sums](t)(s.TLSRPTSums(ctx(t), "nobody.example", time.Time{}, time.Time{})); len(none.Types)+len(none.Reporters) != 0 || none.Sessions != 0 {
		t.Fatalf("sums of a domain without reports: %+v", none)
	}
	// Only the states asked for are counted.
	if c := must[map[store.ReportState]int](t)(s.CountTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "sum.example",
		States: []store.ReportState{store.ReportConflict, store.ReportHeld}})); len(c) != 2 || c[store.ReportConflict] != 1 || c[store.ReportHeld] != 1 {
		t.Fatalf("counts of conflict and held: %v", c)
	}
	got := must[*tlsrptagg.Summary](t)(s.TLSRPTSummary(ctx(t), "sum.example", from, to))
	want := tlsrptagg.Aggregate(counted)
	inWindow := func(d time.Time) bool { return !d.Before(from) && d.Before(to) }
	want.Rows = slices.DeleteFunc(want.Rows, func(r tlsrptagg.Row) bool { return r.Domain != "sum.example" || !inWindow(r.Day) })
	want.DomainRows = slices.DeleteFunc(want.DomainRows, func(r tlsrptagg.DomainRow) bool { return r.Domain != "sum.example" || !inWindow(r.Day) })
	if a, b := summaryText(got), summaryText(want); a != b {
		t.Fatalf("store summary differs from Aggregate:\n%s\nwant\n%s", a, b)
	}
	tot := got.Totals(tlsrptagg.Filter{Type: tlsrpt.PolicySTS})
	// Days 5–14 from two organisations (100 each), days 5–10 of the
	// week's 100 (15 on its first day, 14 on the others) and the
	// promoted report's 100.
	if tot.Successful != 2*10*100+15+5*14+100 {
		t.Fatalf("sts successful %d, want 2185", tot.Successful)
	}
	if tot.ByResult["certificate-expired"] == 0 || tot.ByOrganization["forger.example"].Failed != 0 {
		t.Fatalf("totals %+v", tot)
	}
	counts := must[map[store.ReportState]int](t)(s.CountTLSRPTReports(ctx(t), store.TLSRPTQuery{Domain: "sum.example"}))
	if counts[store.ReportCounted] != 42 || counts[store.ReportConflict] != 1 || counts[store.ReportIgnored] != 1 || counts[store.ReportHeld] != 1 {
		t.Fatalf("counts %v", counts)
	}
	// The held report counts once its domain is configured.
	if n := must[int](t)(s.ReleaseHeldTLSRPT(ctx(t), "sum.example")); n != 1 {
		t.Fatalf("released %d", n)
	}
	if r := must[store.StoredTLSRPT](t)(s.GetTLSRPTReport(ctx(t), held.ID, false)); r.State != store.ReportCounted {
		t.Fatalf("released report %+v", r)
	}
	after := must[*tlsrptagg.Summary](t)(s.TLSRPTSummary(ctx(t), "sum.example", from, to)).Totals(tlsrptagg.Filter{Type: tlsrpt.PolicySTS})
	if after.Sessions() != tot.Sessions()+109 {
		t.Fatalf("after release %d sessions, before %d", after.Sessions(), tot.Sessions())
	}
	counted = append(counted, sampleTLSRPT("google.com", "held1", "sum.example", day0.AddDate(0, 0, 6), 9))
	if a, b := sumsText(t, must[*tlsrptagg.Sums](t)(s.TLSRPTSums(ctx(t), "sum.example", from, to))), sumsText(t, wantSums()); a != b {
		t.Fatalf("store sums after release differ from Aggregate:\n%s\nwant\n%s", a, b)
	}
	// A forced promotion is on record until the domain goes.
	check(t, s.RecordPromoteOverride(ctx(t), store.PromoteOverride{Domain: "sum.example", PolicyID: "1", Status: "not-enough-data", Reasons: []string{"a", "b"}}))
	check(t, s.RecordPromoteOverride(ctx(t), store.PromoteOverride{Domain: "sum.example", PolicyID: "2", Status: "not-ready", At: day0.AddDate(1, 0, 0)}))
	check(t, s.RecordPromoteOverride(ctx(t), store.PromoteOverride{Domain: "other.example", Status: "not-ready"}))
	ovs := must[[]store.PromoteOverride](t)(s.ListPromoteOverrides(ctx(t), "sum.example"))
	if len(ovs) != 2 || ovs[0].PolicyID != "2" || strings.Join(ovs[1].Reasons, ",") != "a,b" || ovs[1].At.IsZero() {
		t.Fatalf("overrides %+v", ovs)
	}
	// Deleting the domain deletes its rows too.
	must[int](t)(s.DeleteTLSRPTDomain(ctx(t), "sum.example"))
	if ovs := must[[]store.PromoteOverride](t)(s.ListPromoteOverrides(ctx(t), "sum.example")); len(ovs) != 0 {
		t.Fatalf("overrides left after delete: %+v", ovs)
	}
	if left := must[*tlsrptagg.Summary](t)(s.TLSRPTSummary(ctx(t), "sum.example", time.Time{}, time.Time{})); len(left.Rows)+len(left.DomainRows) != 0 {
		t.Fatalf("rows left after delete: %+v", left)
	}
	if left := must[*tlsrptagg.Sums](t)(s.TLSRPTSums(ctx(t), "sum.example", time.Time{}, time.Time{})); len(left.Types)+len(left.Reporters) != 0 {
		t.Fatalf("sums left after delete: %+v", left)
	}
}

// summaryText prints a summary with the order inside a row normalised.
func summaryText(s *tlsrptagg.Summary) string {
	var b strings.Builder
	for _, r := range s.Rows {
		slices.SortFunc(r.Failures, func(a, b tlsrptagg.Failure) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		slices.SortFunc(r.Reports, func(a, b tlsrptagg.Ref) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		slices.Sort(r.MXSets)
		fmt.Fprintf(&b, "%+v\n", r)
	}
	for _, d := range s.DomainRows {
		fmt.Fprintf(&b, "%+v\n", d)
	}
	return b.String()
}

// sumsText prints sums as JSON (maps in key order).
func sumsText(t *testing.T, s *tlsrptagg.Sums) string {
	t.Helper()
	b, err := json.MarshalIndent(s, "", " ")
	check(t, err)
	return string(b)
}
