package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
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
