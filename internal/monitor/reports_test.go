package monitor_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/alert"
	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/domainverify"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
)

// withMX3 is a healthy domain with a third MX host the policy does not
// cover (known when the domain was saved: not told by the scan).
func withMX3(at time.Time) *report.Document {
	d := difftest.Healthy(at)
	no := false
	difftest.AddMX(d, "mx3.example.com", "192.0.2.30", false, difftest.Cert("mx3.example.com", "CN=Test CA", "k3", difftest.Expiry))
	d.MX[2].PolicyMatch = &no
	difftest.AddFinding(d, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3.example.com is not covered")
	difftest.SetGrade(d, "D")
	return d
}

// addReport stores a counted report of org about example.com for day.
func (e *env) addReport(org string, day time.Time, failedOnMX3 int64) {
	e.t.Helper()
	e.addReportOn(org, day, "mx3.example.com", failedOnMX3)
}

// addReportOn stores a counted report of org about example.com for day,
// with failed validation failures on mx.
func (e *env) addReportOn(org string, day time.Time, mx string, failed int64) {
	e.t.Helper()
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "example.com", MXPatterns: []string{"mx1.example.com", "mx2.example.com"}, Successful: 500}
	if failed > 0 {
		p.Failed, p.DetailsFailed = failed, failed
		p.Failures = []tlsrpt.FailureDetail{{ResultType: tlsrpt.ValidationFailure, ReceivingMXHostname: mx, SendingMTAIP: "203.0.113.5", FailedSessions: failed}}
	}
	r := &tlsrpt.Report{OrganizationName: org, ReportID: org + day.Format(time.DateOnly), Start: day, End: day.Add(24*time.Hour - time.Second), Policies: []tlsrpt.Policy{p}}
	if _, _, err := e.st.AddTLSRPTReport(e.t.Context(), store.NewTLSRPTReport{Report: r, Receipt: store.ReportReceipt{Channel: "https"}}); err != nil {
		e.t.Fatal(err)
	}
}

// publish makes the account's verification token of d and publishes it
// (or, with ok false, takes it away), as the account does in its DNS:
// the worker finds it at the domain's next scan.
func (e *env) publish(d store.Domain, ok bool) {
	e.t.Helper()
	v, err := e.st.StartVerification(e.t.Context(), d.UserID, d.ID, domainverify.NewToken())
	if err != nil {
		e.t.Fatal(err)
	}
	a := &resolve.Answer{Name: domainverify.Name(d.Name), Type: "TXT", Status: resolve.StatusNXDomain}
	if ok {
		a.Status, a.Records = resolve.StatusOK, []resolve.Record{{Name: a.Name, Type: "TXT", Text: []string{domainverify.Value(v.Token)}}}
	}
	e.dns.Add(a)
}

// TestReportAlerts: what the TLS-RPT reports show is told through the
// outbox like the scan's findings: a first blocking failure once (not
// again the next day, tlsrpt-landscape.md §5.2 D-1), a reporter silent
// for 7 days once (D-2), each with a resolved notice, and nothing resolved
// on days without reports.
func TestReportAlerts(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1", func(c *monitor.Config) { c.Alerts.RemindEvery = -1 })
	e.scans.set("example.com", withMX3(t0))
	d := e.save("example.com", withMX3(t0))
	e.publish(d, true)
	first := tlsrptagg.Day(e.toSlot(d.ID))
	// 30 days of clean daily reports from two organisations.
	for ago := 30; ago >= 1; ago-- {
		for _, org := range []string{"google.com", "microsoft.com"} {
			e.addReport(org, first.AddDate(0, 0, -ago), 0)
		}
	}
	// Each day: the reports of the day before arrive (script), then the
	// domain's daily scan runs and the outbox is delivered.
	day := func(n int, script func(yesterday time.Time)) []string {
		t.Helper()
		if n > 0 {
			e.toSlot(d.ID)
		}
		today := tlsrptagg.Day(e.clock.Now())
		if today != first.AddDate(0, 0, n) {
			t.Fatalf("day %d is %s", n, today)
		}
		if script != nil {
			script(today.AddDate(0, 0, -1))
		}
		return e.scanDay(w, n, "reports-")
	}
	both := func(fail int64) func(time.Time) {
		return func(y time.Time) {
			e.addReport("google.com", y, fail)
			e.addReport("microsoft.com", y, 0)
		}
	}
	if got := day(0, nil); len(got) != 0 {
		t.Fatalf("day 0: %v", got)
	}
	if got := day(1, both(7)); !slices.Equal(got, []string{"opened reports-blocking-failure@mx3.example.com"}) {
		t.Fatalf("day 1, a first blocking failure: %v", got)
	}
	if got := day(2, both(9)); len(got) != 0 {
		t.Fatalf("day 2, the same failure again: %v", got)
	}
	// Microsoft stops reporting; the failure stops.
	onlyGoogle := func(y time.Time) { e.addReport("google.com", y, 0) }
	for n := 3; n <= 4; n++ {
		if got := day(n, onlyGoogle); len(got) != 0 {
			t.Fatalf("day %d: %v", n, got)
		}
	}
	// Day 5: the last failure (reported for day 1) is out of the recent
	// window (3 days).
	if got := day(5, onlyGoogle); !slices.Equal(got, []string{"resolved reports-blocking-failure@mx3.example.com"}) {
		t.Fatalf("day 5: %v", got)
	}
	// Day 9: microsoft.com's last report was for day 1, 8 days ago.
	for n := 6; n <= 8; n++ {
		if got := day(n, onlyGoogle); len(got) != 0 {
			t.Fatalf("day %d: %v", n, got)
		}
	}
	if got := day(9, onlyGoogle); !slices.Equal(got, []string{"opened reports-reporter-silent@microsoft.com"}) {
		t.Fatalf("day 9, a reporter silent for 7 days: %v", got)
	}
	if got := day(10, nil); len(got) != 0 {
		t.Fatalf("day 10: %v", got)
	}
	if got := day(11, both(3)); !slices.Equal(got, []string{"opened reports-blocking-failure@mx3.example.com", "resolved reports-reporter-silent@microsoft.com"}) {
		t.Fatalf("day 11, microsoft reports again and the failure is back: %v", got)
	}
	// No report at all from day 11 on: from day 14 no report covers the
	// recent window, and the open failure is not resolved by reports
	// that are missing.
	for n := 12; n <= 15; n++ {
		if got := day(n, nil); len(got) != 0 {
			t.Fatalf("day %d without reports: %v", n, got)
		}
	}
	// The domain's stored state names the open problem; the scan's
	// document carries the findings.
	got, err := e.st.GetDomain(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := alert.Unmarshal(got.AlertState)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, p := range st.Open() {
		open = append(open, fmt.Sprint(p.ID, "@", p.Subject))
	}
	if !slices.Contains(open, "reports-blocking-failure@mx3.example.com") || slices.Contains(open, "reports-reporter-silent@microsoft.com") {
		t.Fatalf("open problems %v", open)
	}
}

// TestReportRateAlert: a failure rate above the domain's own baseline is
// told through the outbox once, and resolved once the rate falls back,
// for failures that are not blocking (a covered, healthy MX: a sender's
// validation failures the scan cannot reproduce, mox #237).
func TestReportRateAlert(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1", func(c *monitor.Config) { c.Alerts.RemindEvery = -1 })
	e.scans.set("example.com", difftest.Healthy(t0))
	d := e.save("example.com", difftest.Healthy(t0))
	e.publish(d, true)
	first := tlsrptagg.Day(e.toSlot(d.ID))
	for ago := 30; ago >= 1; ago-- {
		for _, org := range []string{"google.com", "microsoft.com"} {
			e.addReportOn(org, first.AddDate(0, 0, -ago), "mx1.example.com", 1) // a baseline of 0.2%
		}
	}
	day := func(n int, fail int64) []string {
		t.Helper()
		if n > 0 {
			e.toSlot(d.ID)
		}
		if y := tlsrptagg.Day(e.clock.Now()).AddDate(0, 0, -1); n > 0 {
			e.addReportOn("google.com", y, "mx1.example.com", fail)
			e.addReportOn("microsoft.com", y, "mx1.example.com", 1)
		}
		return e.scanDay(w, n, "reports-")
	}
	if got := day(0, 0); len(got) != 0 {
		t.Fatalf("day 0, at the baseline: %v", got)
	}
	if got := day(1, 200); !slices.Equal(got, []string{"opened reports-failure-rate@sts"}) {
		t.Fatalf("day 1, 200 failures: %v", got)
	}
	if got := day(2, 150); len(got) != 0 {
		t.Fatalf("day 2, still high: %v", got)
	}
	for n := 3; n <= 4; n++ {
		if got := day(n, 1); len(got) != 0 {
			t.Fatalf("day %d: %v", n, got)
		}
	}
	if got := day(5, 1); !slices.Equal(got, []string{"resolved reports-failure-rate@sts"}) {
		t.Fatalf("day 5, back at the baseline: %v", got)
	}
}

// TestReportAlertsNeedVerifiedDomain: a domain's reports are private, so
// nothing of them reaches an account (no finding in its scans, no alert)
// until it has published its verification record; the record is looked
// up again at each daily scan: a SERVFAIL changes nothing, a record gone
// for domainverify.Lapse ends the verification and the report alerts.
func TestReportAlertsNeedVerifiedDomain(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1", func(c *monitor.Config) { c.Alerts.RemindEvery = -1 })
	e.scans.set("example.com", withMX3(t0))
	d := e.save("example.com", withMX3(t0))
	first := tlsrptagg.Day(e.toSlot(d.ID))
	for ago := 30; ago >= 1; ago-- {
		e.addReport("google.com", first.AddDate(0, 0, -ago), 0)
		e.addReport("microsoft.com", first.AddDate(0, 0, -ago), 0)
	}
	// Each day a blocking failure on mx3 is reported.
	day := func(n int) (told []string, leaked bool) {
		t.Helper()
		if n > 0 {
			e.toSlot(d.ID)
		}
		y := tlsrptagg.Day(e.clock.Now()).AddDate(0, 0, -1)
		e.addReport("google.com", y, 7)
		e.addReport("microsoft.com", y, 0)
		told = append(told, e.scanDay(w, n, "reports-")...)
		scans, _, err := e.st.ListScans(t.Context(), d.ID, "", 1)
		if err != nil || len(scans) != 1 {
			t.Fatalf("day %d: scans %v %v", n, scans, err)
		}
		raw, err := e.st.ScanReport(t.Context(), scans[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		return told, strings.Contains(string(raw), "reports-blocking-failure")
	}
	verified := func() bool {
		v, err := e.st.Verification(t.Context(), d.ID)
		return err == nil && v.Verified()
	}
	// notRead: the last scan's document says it did not read the reports
	// (so a diff does not call their problems fixed).
	notRead := func() bool {
		scans, _, err := e.st.ListScans(t.Context(), d.ID, "", 1)
		if err != nil || len(scans) != 1 {
			t.Fatalf("scans %v %v", scans, err)
		}
		raw, err := e.st.ScanReport(t.Context(), scans[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		var doc report.Document
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(doc.NotRead, func(n report.NotRead) bool { return n.Component == "tls-rpt-reports" })
	}

	if ev, leaked := day(0); len(ev) != 0 || leaked {
		t.Fatalf("never asked to verify: alerts %v, in the scan %v", ev, leaked)
	}
	// A token made but not published (NXDOMAIN).
	e.publish(d, false)
	if ev, leaked := day(1); len(ev) != 0 || leaked || verified() {
		t.Fatalf("token not published: alerts %v, in the scan %v, verified %v", ev, leaked, verified())
	}
	if !notRead() {
		t.Fatal("the scan of a domain not verified does not say it did not read the reports")
	}
	// Published: the daily scan finds the record, and the failure is told.
	e.publish(d, true)
	if ev, leaked := day(2); !slices.Equal(ev, []string{"opened reports-blocking-failure@mx3.example.com"}) || !leaked || !verified() {
		t.Fatalf("published: alerts %v, in the scan %v, verified %v", ev, leaked, verified())
	}
	if notRead() {
		t.Fatal("the scan that read the reports says it did not")
	}
	// A SERVFAIL is no absence: still verified, the failure still in the scan.
	e.dns.Add(&resolve.Answer{Name: domainverify.Name(d.Name), Type: "TXT", Status: resolve.StatusServFail})
	if _, leaked := day(3); !leaked || !verified() {
		t.Fatalf("SERVFAIL: in the scan %v, verified %v", leaked, verified())
	}
	if v, _ := e.st.Verification(t.Context(), d.ID); !v.MissingSince.IsZero() {
		t.Fatalf("a SERVFAIL started the absence: %+v", v)
	}
	// The record is removed: verified for Lapse more, then not.
	e.publish(d, false)
	gone := e.clock.Now()
	n := 4
	for ; verified(); n++ {
		_, leaked := day(n)
		if verified() != leaked {
			t.Fatalf("day %d: verified %v but reports in the scan %v", n, verified(), leaked)
		}
		if n > 20 {
			t.Fatal("the verification never lapsed")
		}
	}
	if since := e.clock.Now().Sub(gone); since < domainverify.Lapse || since > domainverify.Lapse+48*time.Hour {
		t.Fatalf("lapsed %v after the record went, want about %v", since, domainverify.Lapse)
	}
	if ev, leaked := day(n); len(ev) != 0 || leaked {
		t.Fatalf("lapsed: alerts %v, in the scan %v", ev, leaked)
	}
}

// TestLapsedVerificationStopsReportReminders: once a verification has
// lapsed, what the reports showed stays held on the domain (neither
// resolved nor told again, docs/accounts.md "Verifying a domain"): the
// daily reminder and the daily digest, which repeat a problem's message
// (MX host, counts), leave the held report problems out.
func TestLapsedVerificationStopsReportReminders(t *testing.T) {
	e := newEnv(t)
	w := e.worker("w1") // reminders at their default, daily
	e.scans.set("example.com", withMX3(t0))
	d := e.save("example.com", withMX3(t0))
	first := tlsrptagg.Day(e.toSlot(d.ID))
	for ago := 30; ago >= 1; ago-- {
		e.addReport("google.com", first.AddDate(0, 0, -ago), 0)
		e.addReport("microsoft.com", first.AddDate(0, 0, -ago), 0)
	}
	e.publish(d, true)
	day := func(n int) (told []string) {
		t.Helper()
		if n > 0 {
			e.toSlot(d.ID)
		}
		y := tlsrptagg.Day(e.clock.Now()).AddDate(0, 0, -1)
		e.addReport("google.com", y, 7)
		e.addReport("microsoft.com", y, 0)
		told = append(told, e.scanDay(w, n, "")...)
		return told
	}
	has := func(evs []string, ev string) bool { return slices.Contains(evs, ev) }
	const blocking = "reports-blocking-failure@mx3.example.com"
	// The first scan is the baseline (what the user saw when saving).
	if ev := day(0); len(ev) != 0 {
		t.Fatalf("baseline: %v", ev)
	}
	if ev := day(1); !has(ev, "opened "+blocking) {
		t.Fatalf("verified: %v", ev)
	}
	if ev := day(2); !has(ev, "reminder "+blocking) {
		t.Fatalf("verified, a day later: no reminder in %v", ev)
	}
	// The daily digest lists the open problems: the report's too while
	// verified.
	digest, err := e.st.CreateChannel(t.Context(), store.NewChannel{UserID: e.user.ID, Kind: store.ChannelEmail, Target: "digest@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.st.MarkChannelVerified(t.Context(), digest.ID)
	digestOpen := func() (open []string) {
		t.Helper()
		if err := e.st.SetChannelDigest(t.Context(), e.user.ID, digest.ID, true, e.clock.Now().UTC().Hour()); err != nil {
			t.Fatal(err)
		}
		if n, err := w.QueueDigests(t.Context()); err != nil || n != 1 {
			t.Fatalf("digests: %d %v", n, err)
		}
		e.deliver(w)
		for _, m := range e.deliv.take() {
			if m.n.Type != monitor.TypeDigest {
				continue
			}
			for _, dd := range m.n.Domains {
				for _, ev := range dd.Open {
					open = append(open, ev.Finding.ID+"@"+ev.Finding.Subject)
				}
			}
		}
		return open
	}
	if open := digestOpen(); !has(open, blocking) {
		t.Fatalf("verified: the digest lacks the report problem: %v", open)
	}
	e.publish(d, false)
	verified := func() bool {
		v, err := e.st.Verification(t.Context(), d.ID)
		return err == nil && v.Verified()
	}
	n := 3
	for ; verified(); n++ {
		day(n)
		if n > 20 {
			t.Fatal("the verification never lapsed")
		}
	}
	for end := n + 3; n < end; n++ {
		ev := day(n)
		for _, s := range ev {
			if strings.Contains(s, "reports-") {
				t.Fatalf("day %d, lapsed: the reports are told again: %v", n, ev)
			}
		}
	}
	if open := digestOpen(); slices.ContainsFunc(open, func(s string) bool { return strings.HasPrefix(s, "reports-") }) {
		t.Fatalf("lapsed: the digest tells the report problem again: %v", open)
	}
	// Held, not resolved: the problem stays open on the domain.
	dom, err := e.st.GetDomain(t.Context(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := alert.Unmarshal(dom.AlertState)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, p := range st.Open() {
		held = held || p.ID == "reports-blocking-failure"
	}
	if !held {
		t.Fatalf("lapsed: the report problem was resolved, want held: %+v", st.Open())
	}
}

// scanDay runs the one scan due on day n, delivers the outbox and returns
// the events delivered that contain filter ("" for all of them).
func (e *env) scanDay(w *monitor.Worker, n int, filter string) []string {
	e.t.Helper()
	if got := e.runDue(w); got != 1 {
		e.t.Fatalf("day %d: %d scans", n, got)
	}
	e.deliver(w)
	var out []string
	for _, m := range e.deliv.take() {
		for _, ev := range events(m.n) {
			if strings.Contains(ev, filter) {
				out = append(out, ev)
			}
		}
	}
	return out
}
