package monitor_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/monitor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./internal/monitor -run %s -update rewrites it):\n%s", name, t.Name(), got)
	}
}

func str(s string) *string { return &s }

var at = time.Date(2026, 11, 2, 6, 12, 0, 0, time.UTC)

func alertNotification() monitor.Notification {
	return monitor.Notification{Version: 1, Type: monitor.TypeAlert, Key: "scan:42", Created: at, Domain: "example.com",
		Scan: &monitor.ScanRef{ID: 42, At: at, Grade: str("D"), PreviousGrade: str("A"), URL: "https://checker.example.test/domains/7/scans/42"},
		Events: []monitor.Event{
			{Kind: "opened", Title: "Policy changed but the id did not", Since: at, Finding: monitor.EventFinding{ID: "history-policy-changed-same-id", Severity: "error",
				Component: "history", Subject: "_mta-sts.example.com id=1", Message: "The policy changed since the scan of 2026-11-01 06:12 UTC (mx added: mx9.example.com) but _mta-sts.example.com still has id 1.",
				Fix: "Every policy change needs a new id: keep the new file online and set _mta-sts.example.com to \"v=STSv1; id=20261102061200\".", Ref: "RFC 8461 §3.1, §8.1"}},
			{Kind: "worse", Title: "A certificate expires within 21 days", Before: "warning", Stage: 3, Finding: monitor.EventFinding{ID: "history-cert-expires", Severity: "error",
				Component: "history", Subject: "mx1.example.com", Message: "The certificate of the MX host mx1.example.com (at 192.0.2.10) expires on 2026-11-03 00:00 UTC, in 1 day.", Ref: "RFC 8461 §3.3, §4.2"}},
			{Kind: "resolved", Title: "No TLS-RPT record", Since: at.Add(-72 * time.Hour), Resolved: at, Finding: monitor.EventFinding{ID: "tlsrpt-missing", Severity: "warning",
				Component: "tls-rpt", Subject: "_smtp._tls.example.com", Message: "There is no TLS-RPT record."}},
		},
		Open: 2, DomainURL: "https://checker.example.test/domains/7", UnsubscribeURL: "https://checker.example.test/unsubscribe/ABCDEF"}
}

// TestRenderEmail: the alert, resolved, digest and test mails, and the
// one-click unsubscribe headers of RFC 8058.
func TestRenderEmail(t *testing.T) {
	e := monitor.RenderEmail(alertNotification())
	if e.Subject != "[mailtls] example.com: 1 new problem, 1 problem worse, 1 problem resolved (grade A → D)" {
		t.Errorf("subject %q", e.Subject)
	}
	if e.Header["List-Unsubscribe"] != "<https://checker.example.test/unsubscribe/ABCDEF>" || e.Header["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Errorf("headers %v", e.Header)
	}
	golden(t, "alert.txt", e.Text)

	one := alertNotification()
	one.Type, one.Events, one.Open = monitor.TypeResolved, one.Events[2:], 0
	one.Scan.PreviousGrade = str("D")
	r := monitor.RenderEmail(one)
	if r.Subject != "[mailtls] example.com: resolved: No TLS-RPT record" || !strings.Contains(r.Text, "No problem is open now.") {
		t.Errorf("resolved %q:\n%s", r.Subject, r.Text)
	}

	d := monitor.Notification{Version: 1, Type: monitor.TypeDigest, Created: at, Open: 1, UnsubscribeURL: "https://checker.example.test/unsubscribe/ABCDEF",
		Domains: []monitor.DigestDomain{
			{Domain: "example.com", Grade: str("D"), DomainURL: "https://checker.example.test/domains/7", Open: alertNotification().Events[:1],
				Resolved: alertNotification().Events[2:]},
			{Domain: "example.org", Grade: str("A+"), Muted: true, Open: []monitor.Event{}, Resolved: []monitor.Event{}},
		}}
	de := monitor.RenderEmail(d)
	if de.Subject != "[mailtls] Daily summary: 2 domains, 1 problem open" {
		t.Errorf("digest subject %q", de.Subject)
	}
	golden(t, "digest.txt", de.Text)

	tm := monitor.RenderEmail(monitor.Notification{Type: monitor.TypeTest, Text: "This is a test."})
	if tm.Subject != "[mailtls] Test message" || len(tm.Header) != 0 || !strings.HasPrefix(tm.Text, "This is a test.") {
		t.Errorf("test mail %+v", tm)
	}
}
