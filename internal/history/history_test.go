package history_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/diff"
	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/history"
	"github.com/mailtls/mailtls/internal/report"
)

var t0 = time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)

// run evaluates cur against prev and appends the history findings to cur,
// as monitoring stores them, so cur can be the next run's prev.
func run(prev, cur *report.Document) []history.Finding {
	var p *diff.Scan
	if prev != nil {
		s := diff.FromDocument(prev)
		p = &s
	}
	at, _ := time.Parse(time.RFC3339, cur.ScannedAt)
	out := history.Evaluate(p, cur, at)
	for _, f := range out {
		cur.Findings = append(cur.Findings, report.Finding{ID: string(f.ID), Severity: f.Severity.String(), Component: string(f.Component),
			Subject: f.Subject, Message: f.Message, Ref: f.Ref, Fix: f.Fix})
	}
	return out
}

func day(n int) *report.Document { return difftest.Healthy(t0.Add(time.Duration(n) * 24 * time.Hour)) }

// only returns the findings of id as "severity subject stage".
func only(fs []history.Finding, id finding.ID) []string {
	var out []string
	for _, f := range fs {
		if f.ID == id {
			out = append(out, fmt.Sprintf("%s %s %d", f.Severity, f.Subject, f.Stage))
		}
	}
	return out
}

func want(t *testing.T, step string, fs []history.Finding, id finding.ID, expect ...string) {
	t.Helper()
	if got := only(fs, id); !slices.Equal(got, expect) {
		t.Errorf("%s: %s = %q, want %q", step, id, got, expect)
	}
}

// TestPolicyChangedSameID walks STS-TXT-11 / MISC-15 (RFC 8461 §3.1,
// §8.1): run 1 body A id X, run 2 body B id X → error; it stays open while
// the id stays; a new id closes it; a new id over the same body is info.
func TestPolicyChangedSameID(t *testing.T) {
	d0, d1, d2, d3, d4 := day(0), day(1), day(2), day(3), day(4)
	run(nil, d0)
	d1.Policy.MX = append(d1.Policy.MX, "mx3.example.com")
	fs := run(d0, d1)
	want(t, "body changed", fs, finding.HistoryPolicyChangedSameID, "error _mta-sts.example.com id=1 0")
	if f := fs[0]; !strings.Contains(f.Message, "mx added: mx3.example.com") || !strings.Contains(f.Message, "still has id 1") || !strings.Contains(f.Fix, "id=20261102060000") {
		t.Errorf("message %q fix %q", f.Message, f.Fix)
	}
	d2.Policy.MX = d1.Policy.MX
	want(t, "same body, same id: still open", run(d1, d2), finding.HistoryPolicyChangedSameID, "error _mta-sts.example.com id=1 0")
	d3.Policy.MX, d3.Policy.ID = d1.Policy.MX, "2"
	fs = run(d2, d3)
	want(t, "id bumped", fs, finding.HistoryPolicyChangedSameID)
	want(t, "id bumped with the body of the previous scan", fs, finding.HistoryIDChangedSamePolicy, "info _mta-sts.example.com 0")
	d4.Policy.MX, d4.Policy.ID = d1.Policy.MX, "2"
	if fs := run(d3, d4); len(fs) != 0 {
		t.Errorf("nothing changed: %+v", fs)
	}
}

// TestPolicyChangeUnseen: when the policy cannot be fetched now, a known
// problem stays open (temporary is not absent), and nothing new is said.
func TestPolicyChangeUnseen(t *testing.T) {
	d0, d1, d2 := day(0), day(1), day(2)
	d1.Policy.Mode = "testing"
	run(d0, d1)
	d2.Policy = nil
	difftest.AddFinding(d2, "policy-fetch-failed", "error", "policy-host", "mta-sts.example.com", "timeout")
	want(t, "fetch failed", run(d1, d2), finding.HistoryPolicyChangedSameID, "error _mta-sts.example.com id=1 0")
}

// TestMXNotCovered: an added MX host that the enforce policy does not
// cover (RFC 8461 §4.1, §8.1) is an error, a warning under testing; it
// stays open until the policy covers it; a pattern removed from the
// policy is reported too.
func TestMXNotCovered(t *testing.T) {
	c3 := difftest.Cert("mx3.example.com", "CN=Test CA", "k3", difftest.Expiry)
	d0, d1, d2, d3 := day(0), day(1), day(2), day(3)
	difftest.AddMX(d1, "mx3.example.com", "192.0.2.30", false, c3)
	fs := run(d0, d1)
	want(t, "added", fs, finding.HistoryMXNotCovered, "error mx3.example.com 0")
	if !strings.Contains(fs[0].Message, "was added to the MX records") {
		t.Errorf("message %q", fs[0].Message)
	}
	difftest.AddMX(d2, "mx3.example.com", "192.0.2.30", false, c3)
	d2.Policy.Mode = "testing"
	d2.Policy.ID = "2"
	want(t, "still uncovered, now testing", run(d1, d2), finding.HistoryMXNotCovered, "warning mx3.example.com 0")
	difftest.AddMX(d3, "mx3.example.com", "192.0.2.30", true, c3)
	want(t, "covered", run(d2, d3), finding.HistoryMXNotCovered)

	// The policy loses the pattern of an existing host.
	e0, e1 := day(0), day(1)
	no := false
	e1.MX[1].PolicyMatch = &no
	e1.Policy.MX = e1.Policy.MX[:1]
	e1.Policy.ID = "2"
	fs = run(e0, e1)
	want(t, "pattern removed", fs, finding.HistoryMXNotCovered, "error mx2.example.com 0")
	if !strings.Contains(fs[0].Message, "no longer") {
		t.Errorf("message %q", fs[0].Message)
	}

	// A host uncovered in both scans without the finding is the scan's
	// own mx-not-covered, not a change.
	f0, f1 := day(0), day(1)
	f0.MX[1].PolicyMatch, f1.MX[1].PolicyMatch = &no, &no
	want(t, "uncovered before", run(f0, f1), finding.HistoryMXNotCovered)
}

// TestCertExpires: 21, 7 and 2 days before expiry, for the policy host
// and the MX hosts (RFC 8461 §3.3, §4.2); an expired certificate is the
// scan's own finding. It needs no previous scan.
func TestCertExpires(t *testing.T) {
	exp := difftest.Expiry
	for _, c := range []struct {
		left time.Duration
		want []string
	}{
		{22 * 24 * time.Hour, nil},
		{21 * 24 * time.Hour, []string{"warning mta-sts.example.com 1", "warning mx1.example.com 1", "warning mx2.example.com 1"}},
		{6 * 24 * time.Hour, []string{"warning mta-sts.example.com 2", "warning mx1.example.com 2", "warning mx2.example.com 2"}},
		{47 * time.Hour, []string{"error mta-sts.example.com 3", "error mx1.example.com 3", "error mx2.example.com 3"}},
		{-time.Hour, nil},
	} {
		d := difftest.Healthy(exp.Add(-c.left))
		want(t, fmt.Sprint(c.left), run(nil, d), finding.HistoryCertExpires, c.want...)
	}
	// Per host, the certificate that expires first counts.
	d := difftest.Healthy(exp.Add(-60 * 24 * time.Hour))
	difftest.MXCert(d, 1, difftest.Cert("mx2.example.com", "CN=Test CA", "k2", exp.Add(-59*24*time.Hour)))
	fs := run(nil, d)
	want(t, "one host", fs, finding.HistoryCertExpires, "error mx2.example.com 3")
	if !strings.Contains(fs[0].Message, "192.0.2.20") || !strings.Contains(fs[0].Message, "in 1 day") {
		t.Errorf("message %q", fs[0].Message)
	}
}

// TestTLSAMismatch: DANE authenticated mx1 before; a renewal with a new
// key without a new TLSA record breaks it (RFC 7671 §8.1; MISC-40).
func TestTLSAMismatch(t *testing.T) {
	d0, d1, d2, d3 := day(0), day(1), day(2), day(3)
	newKey := difftest.Cert("mx1.example.com", "CN=Test CA", "k1-new", difftest.Expiry.Add(90*24*time.Hour))
	for _, d := range []*report.Document{d1, d2} {
		difftest.MXCert(d, 0, newKey)
		d.MX[0].Addresses[0].DANE = &report.AddressDANE{Status: "mismatch"}
		d.MX[0].DANE.Status = "invalid"
	}
	fs := run(d0, d1)
	want(t, "new key", fs, finding.HistoryTLSAMismatch, "error mx1.example.com 0")
	if !strings.Contains(fs[0].Message, "has a new key") {
		t.Errorf("message %q", fs[0].Message)
	}
	want(t, "still", run(d1, d2), finding.HistoryTLSAMismatch, "error mx1.example.com 0")
	difftest.MXCert(d3, 0, newKey)
	d3.MX[0].DANE.Records = []string{"3 1 1 cccc"}
	want(t, "new record published", run(d2, d3), finding.HistoryTLSAMismatch)

	// The records changed, the certificate did not.
	e0, e1 := day(0), day(1)
	e1.MX[0].DANE.Records = []string{"3 1 1 ffff"}
	e1.MX[0].Addresses[0].DANE = &report.AddressDANE{Status: "mismatch"}
	fs = run(e0, e1)
	want(t, "records changed", fs, finding.HistoryTLSAMismatch, "error mx1.example.com 0")
	if !strings.Contains(fs[0].Message, "the TLSA records changed") {
		t.Errorf("message %q", fs[0].Message)
	}
}

// TestDisappeared: a definite absence is reported, a temporary failure is
// not (and keeps a known problem open).
func TestDisappeared(t *testing.T) {
	rec := "_mta-sts.example.com"
	d0, d1, d2, d3 := day(0), day(1), day(2), day(3)
	d1.Policy, d1.PolicyStatus = nil, "absent"
	difftest.AddFinding(d1, "sts-record-missing", "info", "mta-sts-record", "_mta-sts.example.com", "none")
	fs := run(d0, d1)
	want(t, "record gone", fs, finding.HistoryDisappeared, "error "+rec+" 0")
	if !strings.Contains(fs[0].Message, "keep applying it") {
		t.Errorf("message %q", fs[0].Message)
	}
	d2.Policy, d2.PolicyStatus = nil, "undetermined"
	difftest.SetGrade(d2, "")
	difftest.AddFinding(d2, "sts-record-undetermined", "warning", "mta-sts-record", rec, "SERVFAIL")
	want(t, "undetermined keeps it", run(d1, d2), finding.HistoryDisappeared, "error "+rec+" 0")
	want(t, "back", run(d2, d3), finding.HistoryDisappeared)

	// A temporary failure right after a good scan says nothing.
	e0, e1 := day(0), day(1)
	e1.Policy = nil
	difftest.AddFinding(e1, "sts-record-undetermined", "warning", "mta-sts-record", rec, "timeout")
	want(t, "timeout", run(e0, e1), finding.HistoryDisappeared)

	// After mode none, removing the record is the planned retirement.
	n0, n1 := day(0), day(1)
	n0.Policy.Mode = "none"
	n1.Policy = nil
	difftest.AddFinding(n1, "sts-record-missing", "info", "mta-sts-record", rec, "none")
	want(t, "after none", run(n0, n1), finding.HistoryDisappeared, "info "+rec+" 0")

	// TLS-RPT and TLSA records.
	r0, r1 := day(0), day(1)
	r1.TLSRPT = nil
	difftest.AddFinding(r1, "tlsrpt-missing", "warning", "tls-rpt", "_smtp._tls.example.com", "none")
	r1.MX[0].DANE = &report.MXDANE{Status: "none", DNSSEC: "secure", Owner: "_25._tcp.mx1.example.com", Records: []string{}}
	want(t, "tls-rpt and tlsa", run(r0, r1), finding.HistoryDisappeared,
		"warning _25._tcp.mx1.example.com 0", "warning _smtp._tls.example.com 0")

	// The policy host.
	p0, p1 := day(0), day(1)
	p1.Policy = nil
	difftest.AddFinding(p1, "policy-host-no-address", "error", "policy-host", "mta-sts.example.com", "NXDOMAIN")
	want(t, "policy host", run(p0, p1), finding.HistoryDisappeared, "error mta-sts.example.com 0")
}

// TestGradeDropped: the drop stays open until the grade is back, its stage
// counts the grades lost, and an undetermined grade is not a verdict.
func TestGradeDropped(t *testing.T) {
	ds := []*report.Document{day(0), day(1), day(2), day(3), day(4), day(5)}
	grades := []string{"A", "C", "C", "D", "", "A"}
	expect := [][]string{nil, {"warning grade before: A 2"}, {"warning grade before: A 2"}, {"error grade before: A 3"}, {"error grade before: A 3"}, nil}
	for i, d := range ds {
		difftest.SetGrade(d, grades[i])
		var prev *report.Document
		if i > 0 {
			prev = ds[i-1]
		}
		want(t, fmt.Sprintf("scan %d (%q)", i, grades[i]), run(prev, d), finding.HistoryGradeDropped, expect[i]...)
	}
	if f := ds[2].Findings[len(ds[2].Findings)-1]; !strings.Contains(f.Message, "it was A before it dropped") {
		t.Errorf("carried message %q", f.Message)
	}
}

// TestSummaryPrevious: the previous scan kept as a summary (no document)
// keeps known problems open but reports nothing new it cannot see.
func TestSummaryPrevious(t *testing.T) {
	d0, d1 := day(0), day(1)
	d1.Policy.Mode = "testing"
	run(d0, d1)
	d2 := day(2)
	d2.Policy.Mode = "testing"
	prev := diff.Scan{Grade: "A", Findings: d1.Findings}
	fs := history.Evaluate(&prev, d2, t0.Add(48*time.Hour))
	want(t, "summary", fs, finding.HistoryPolicyChangedSameID, "error _mta-sts.example.com id=1 0")
	d2.Policy.ID = "2"
	fs = history.Evaluate(&prev, d2, t0.Add(48*time.Hour))
	want(t, "summary, new id", fs, finding.HistoryPolicyChangedSameID)
}
