package tlsrptintake

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

func stsTotals(t *testing.T, w *world, dom string) tlsrptagg.Totals {
	t.Helper()
	sum, err := w.db.TLSRPTSummary(ctx(t), dom, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return sum.Totals(tlsrptagg.Filter{Domain: dom, Type: tlsrpt.PolicySTS})
}

// the same report as gzip and as JSON over HTTPS, then as a mail
// through SMTP, then as a file: one stored report, and the day's totals
// do not change after the first copy.
func TestSameReportEveryChannel(t *testing.T) {
	w := newWorld(t)
	u := httpsServer(t, &HTTPHandler{Intake: w.in})
	addr, tc, _ := smtpWorld(t, w, SMTPConfig{})
	r := report("reporter.test", "2026-05-04_example.test", "example.test", day, 95, tlsrpt.FailureDetail{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: "mx1.example.test", FailedSessions: 5})
	js := jsonOf(t, r)
	if code, _ := post(t, u, "application/tlsrpt+gzip", gz(js)); code != http.StatusCreated {
		t.Fatalf("first copy: %d", code)
	}
	first := stsTotals(t, w, "example.test")
	if first.Successful != 95 || first.Failed != 5 {
		t.Fatalf("totals %+v", first)
	}
	if code, _ := post(t, u, "application/tlsrpt+json", js); code != http.StatusOK {
		t.Fatalf("json copy: %d", code)
	}
	mail := w.keys.Sign(t, reportMail("example.test", "x", gz(js)), "reporter.test", "s1", true)
	if err := send(t, addr, tc, "tlsrpt@example.test", mail); err != nil {
		t.Fatal(err)
	}
	if _, err := w.in.Mail(ctx(t), []byte(mail), Source{Channel: ChannelFile, FileName: "report.eml", AdminImport: true}); err != nil {
		t.Fatal(err)
	}
	s := only(t, w.db, "reporter.test", r.ReportID)
	if channels(s) != "https https smtp file" || s.State != store.ReportCounted || s.Receipts[2].DKIM != "pass" {
		t.Errorf("receipts %q, state %s", channels(s), s.State)
	}
	if again := stsTotals(t, w, "example.test"); again.Successful != first.Successful || again.Failed != first.Failed || len(again.Reports) != 1 {
		t.Errorf("totals changed: %+v", again)
	}
}

// the quirks real senders have are stored whole, with
// the note, and read the same way whatever the channel.
func TestQuirksStoredWhole(t *testing.T) {
	w := newWorld(t)
	body := func(js string) Result {
		t.Helper()
		r, err := w.in.Body(ctx(t), []byte(js), Source{Channel: ChannelHTTPS})
		if err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		return r
	}
	const pol = `"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mx1.example.test","mx: *.example.test","max_age: 86400"],"policy-domain":"example.test"%s}`
	rep := func(id, dates, policy, rest string) string {
		return `{"organization-name":"Microsoft Corporation","date-range":` + dates + `,"contact-info":"tlsrpt@microsoft.com","report-id":"` + id + `","policies":[{` + policy + `,"summary":{"total-successful-session-count":10,"total-failure-session-count":0}` + rest + `}]}`
	}
	const zoned = `{"start-datetime":"2026-05-04T00:00:00Z","end-datetime":"2026-05-04T23:59:59Z"}`
	const zoneless = `{"start-datetime":"2026-05-05T00:00:00","end-datetime":"2026-05-05T23:59:59"}`

	// without a zone, the same UTC day, and a note.
	a := body(rep("a3", zoneless, fmt.Sprintf(pol, ""), ""))
	if !a.Stored.Report.Start.Equal(day.AddDate(0, 0, 1)) || !a.Stored.Report.HasNote(tlsrpt.NoteDateNoZone) {
		t.Errorf("A-3: %v, notes %+v", a.Stored.Report.Start, a.Stored.Report.Notes)
	}
	// mx-host as a string, an array, [] or absent: the same patterns.
	var pats []string
	for i, mx := range []string{`,"mx-host":"mx1.example.test"`, `,"mx-host":["mx1.example.test","*.example.test"]`, `,"mx-host":[]`, ``} {
		r := body(rep(fmt.Sprint("a4-", i), zoned, fmt.Sprintf(pol, mx), ""))
		pats = append(pats, strings.Join(r.Stored.Report.Policies[0].MXPatterns, ","))
	}
	if pats[1] != pats[2] || pats[2] != pats[3] || pats[3] != "mx1.example.test,*.example.test" || pats[0] != "mx1.example.test" {
		t.Errorf("A-4 patterns %q", pats)
	}
	// Microsoft's TLSA policy-string, one element holding a JSON array.
	tlsa := body(`{"organization-name":"Microsoft Corporation","date-range":` + zoned + `,"contact-info":"tlsrpt@microsoft.com","report-id":"a5","policies":[{"policy":{"policy-type":"tlsa","policy-string":["[\"3 1 1 ABCD\",\"3 1 1 EF01\"]"],"policy-domain":"dane.test"},"summary":{"total-successful-session-count":7,"total-failure-session-count":0}}]}`)
	if got := tlsa.Stored.Report.Policies[0].Strings; len(got) != 2 || got[0] != "3 1 1 ABCD" {
		t.Errorf("A-5: %q", got)
	}
	// details without IPs and MX, contact-info null: stored whole.
	a6 := body(`{"organization-name":"Stalwart","date-range":` + zoned + `,"contact-info":null,"report-id":"a6","policies":[{"policy":{"policy-type":"sts","policy-domain":"example.test"},"summary":{"total-successful-session-count":0,"total-failure-session-count":2},"failure-details":[{"result-type":"sts-policy-fetch-error","failed-session-count":2}]}]}`)
	if p := a6.Stored.Report.Policies[0]; a6.Stored.Report.ContactInfo != "" || p.Failed != 2 || p.Failures[0].ReceivingMXHostname != "" || a6.Stored.State != store.ReportCounted {
		t.Errorf("A-6: %+v", a6.Stored)
	}
	// no-policy-found without policy-domain, by mail: the domain
	// comes from TLS-Report-Domain.
	npf := `{"organization-name":"sonne.example","date-range":` + zoned + `,"contact-info":"mailto:tlsrpt@reporter.test","report-id":"a6-npf","policies":[{"policy":{"policy-type":"no-policy-found"},"summary":{"total-successful-session-count":4,"total-failure-session-count":0}}]}`
	rs, err := w.in.Mail(ctx(t), []byte(w.keys.Sign(t, reportMail("example.test", "npf", gz([]byte(npf))), "reporter.test", "s1", true)), Source{Channel: ChannelSMTP})
	if err != nil || len(rs) != 1 || rs[0].Stored.Report.Policies[0].Domain != "example.test" || !rs[0].Stored.Report.HasNote(tlsrpt.NotePolicyDomainMissing) || rs[0].Stored.State != store.ReportCounted {
		t.Errorf("A-6 npf: %v %+v", err, rs)
	}
	// the summary says 1 failure, the details 2: 1 is the total and a
	// note says they disagree.
	a7 := body(rep("a7", zoned, fmt.Sprintf(pol, ""), `,"failure-details":[{"result-type":"validation-failure","receiving-mx-hostname":"mx1.example.test","failed-session-count":2}]`))
	if p := a7.Stored.Report.Policies[0]; p.Failed != 0 || p.DetailsFailed != 2 || !a7.Stored.Report.HasNote(tlsrpt.NoteTotalsDisagree) {
		t.Errorf("A-7, no failure in the summary, 2 in the details: %+v", p)
	}
	a7b := body(strings.Replace(rep("a7b", zoned, fmt.Sprintf(pol, ""), `,"failure-details":[{"result-type":"validation-failure","receiving-mx-hostname":"mx1.example.test","failed-session-count":2}]`),
		`"total-failure-session-count":0`, `"total-failure-session-count":1`, 1))
	if p := a7b.Stored.Report.Policies[0]; p.Failed != 1 || p.DetailsFailed != 2 || !a7b.Stored.Report.HasNote(tlsrpt.NoteTotalsDisagree) {
		t.Errorf("A-7: %+v", p)
	}
	// same organisation and report-id, other counts: a conflict; the
	// first stays counted.
	c := body(strings.Replace(rep("a3", zoneless, fmt.Sprintf(pol, ""), ""), `"total-successful-session-count":10`, `"total-successful-session-count":99`, 1))
	if c.Stored.State != store.ReportConflict || !strings.Contains(c.Stored.Reason, fmt.Sprint(a.Stored.ID)) {
		t.Errorf("A-10: %+v", c.Stored)
	}
	if s, _ := w.db.GetTLSRPTReport(ctx(t), a.Stored.ID, false); s.State != store.ReportCounted {
		t.Errorf("A-10: the first is %s", s.State)
	}
	// A-8 through the file import: an ordinary mail changes no figure.
	before := stsTotals(t, w, "example.test")
	if _, err := w.in.Mail(ctx(t), []byte("From: a@b.test\r\nSubject: hi\r\n\r\nhello\r\n"), Source{Channel: ChannelFile, AdminImport: true}); err == nil || !strings.Contains(err.Error(), "no TLS-RPT report found") || !Refused(err) {
		t.Errorf("A-8: %v", err)
	}
	if after := stsTotals(t, w, "example.test"); after.Successful != before.Successful {
		t.Errorf("A-8 changed the figures")
	}
}

// Reports about a domain nobody configured are held aside, out of the
// figures; the file import counts unsigned mail as the admin's own act and
// still refuses mail whose signature fails.
func TestHeldAndAdminImport(t *testing.T) {
	w := newWorld(t)
	r, err := w.in.Body(ctx(t), jsonOf(t, report("google.com", "s1", "stranger.test", day, 10)), Source{Channel: ChannelHTTPS})
	if err != nil || r.Stored.State != store.ReportHeld {
		t.Fatalf("%v %+v", err, r.Stored)
	}
	if tot := stsTotals(t, w, "stranger.test"); tot.Successful != 0 {
		t.Errorf("held report counted: %+v", tot)
	}
	unsigned := reportMail("example.test", "u1", gz(jsonOf(t, report("reporter.test", "u1", "example.test", day, 10))))
	rs, err := w.in.Mail(ctx(t), []byte(unsigned), Source{Channel: ChannelFile, AdminImport: true})
	if err != nil || rs[0].Stored.State != store.ReportCounted || !rs[0].Unsigned || !strings.Contains(rs[0].Stored.Receipts[0].DKIM, "imported by the administrator") {
		t.Errorf("unsigned import: %v %+v", err, rs)
	}
	tampered := strings.Replace(w.keys.Sign(t, reportMail("example.test", "u2", gz(jsonOf(t, report("reporter.test", "u2", "example.test", day, 10)))), "reporter.test", "s1", true), "aggregate", "forged", 1)
	rs, err = w.in.Mail(ctx(t), []byte(tampered), Source{Channel: ChannelFile, AdminImport: true})
	if err != nil || rs[0].Stored.State != store.ReportIgnored || rs[0].DKIM.Status != tlsrptmail.DKIMFail {
		t.Errorf("tampered import: %v %+v", err, rs)
	}
	rs, err = w.in.Mail(ctx(t), []byte(tampered), Source{Channel: ChannelFile, AdminImport: true, AcceptUnverified: true})
	if err != nil || rs[0].Outcome != store.OutcomePromoted {
		t.Errorf("tampered import, accepted: %v %+v", err, rs)
	}
}

// D-3: metric label values come from the configured domains and fixed
// lists only; a report with an invented organisation, domain or result
// type creates no new series.
func TestMetricsBounded(t *testing.T) {
	w := newWorld(t)
	inv := report("Evil <script> Org", "e1", "example.test", day, 3, tlsrpt.FailureDetail{ResultType: "invented-result", ReceivingMXHostname: "mx.evil", FailedSessions: 2})
	inv.Policies = append(inv.Policies, tlsrpt.Policy{Type: "made-up", Domain: "example.test", Successful: 1})
	for _, r := range []*tlsrpt.Report{inv, report("x", "e2", "unconfigured-random-1234.test", day, 5)} {
		if _, err := w.in.Body(ctx(t), jsonOf(t, r), Source{Channel: ChannelHTTPS}); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := w.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"example.test": true, "dane.test": true, "sts": true, "tlsa": true, "no-policy-found": true, "other": true,
		"successful": true, "failed": true, "https": true, "smtp": true, "imap": true, "file": true}
	for _, st := range []store.ReportState{store.ReportCounted, store.ReportConflict, store.ReportIgnored, store.ReportHeld} {
		allowed[string(st)] = true
	}
	for _, o := range []store.ReportOutcome{store.OutcomeNew, store.OutcomeDuplicate, store.OutcomePromoted} {
		allowed[string(o)] = true
	}
	for _, rt := range []tlsrpt.ResultType{tlsrpt.STARTTLSNotSupported, tlsrpt.CertificateHostMismatch, tlsrpt.CertificateExpired, tlsrpt.CertificateNotTrusted,
		tlsrpt.ValidationFailure, tlsrpt.TLSAInvalid, tlsrpt.DNSSECInvalid, tlsrpt.DANERequired, tlsrpt.STSPolicyFetchError, tlsrpt.STSPolicyInvalid, tlsrpt.STSWebPKIInvalid} {
		allowed[string(rt)] = true
	}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			for _, lp := range m.GetLabel() {
				if !allowed[lp.GetValue()] {
					t.Errorf("%s has label %s=%q from report text", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if series == 0 {
		t.Fatal("no series at all")
	}
	if v := testutil.ToFloat64(w.in.Metrics.Failures.WithLabelValues("example.test", "other")); v != 2 {
		t.Errorf("invented result type counted under other: %v", v)
	}
	if v := testutil.ToFloat64(w.in.Metrics.Received.WithLabelValues(ChannelHTTPS, "held")); v != 1 {
		t.Errorf("held: %v", v)
	}
}
