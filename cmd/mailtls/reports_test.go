package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

// runAt runs mailtls in this process with the clock at now and the
// default store under dir.
func runAt(t *testing.T, now time.Time, dir string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: func() time.Time { return now },
		Getenv: func(k string) string {
			if k == "STATE_DIRECTORY" {
				return dir
			}
			return ""
		}, ResolvConf: "/nonexistent", IsTerminal: func(io.Writer) bool { return false }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Run(ctx, args, env)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// writeReport writes r as a .json file in dir.
func writeReport(t *testing.T, dir string, r *tlsrpt.Report) string {
	t.Helper()
	b, err := r.MarshalRFC()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("%s!%s!%d.json", strings.ReplaceAll(r.OrganizationName, " ", "_"), r.ReportID, r.Start.Unix()))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func dailyReport(org, dom string, day time.Time, mx []string, ok int64, failures ...tlsrpt.FailureDetail) *tlsrpt.Report {
	strs := []string{"version: STSv1", "mode: testing"}
	for _, m := range mx {
		strs = append(strs, "mx: "+m)
	}
	p := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: dom, Strings: append(strs, "max_age: 86400"), MXHost: mx, Successful: ok, Failures: failures}
	for _, f := range failures {
		p.Failed += f.FailedSessions
	}
	return &tlsrpt.Report{OrganizationName: org, ContactInfo: "tlsrpt@" + org, ReportID: day.Format(time.DateOnly) + "_" + dom,
		Start: day, End: day.Add(24*time.Hour - time.Second), Policies: []tlsrpt.Policy{p}}
}

// The journey (tlsrpt-landscape.md §5.2 C-1, C-3, C-7): a lab
// domain in testing has not enough data; then a backup MX the policy does
// not cover appears and reports show failures on it: not ready; the
// policy is fixed and two weeks of clean reports follow (injected clock):
// ready. policy promote follows the verdict at every step.
func TestReadinessJourney(t *testing.T) {
	l := lab.New(t)
	const dom = "journey.test"
	l.MustMX(t, "mx1."+dom, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	l.DNS.MustAdd(t, "journey.test. 300 IN MX 10 mx1.journey.test.")
	var body atomic.Value
	body.Store("version: STSv1\r\nmode: testing\r\nmx: mx1.journey.test\r\nmax_age: 86400\r\n")
	l.MustPolicyHost(t, dom, lab.PolicyHostOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body.Load())
	})})
	l.DNS.MustAdd(t, `_mta-sts.journey.test. 300 IN TXT "v=STSv1; id=1"`, `_smtp._tls.journey.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@journey.test"`)
	ca, err := l.CA.WriteRootPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The lab's flags, read at each run: MX hosts added later get their
	// connect-to rules.
	flags := func() []string {
		args := []string{"--resolver", l.DNS.Addr(), "--ca-file", ca}
		for _, c := range l.ConnectToFlags() {
			args = append(args, "--connect-to", c)
		}
		return args
	}
	state, files := t.TempDir(), t.TempDir()
	now := time.Now().UTC()
	verdict := func(now time.Time) (int, tlsrptview.Summary, map[string]any) {
		t.Helper()
		r := runAt(t, now, state, append(append([]string{"reports", "readiness", "--json"}, flags()...), dom)...)
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("readiness: %v\n%s%s", err, r.stdout, r.stderr)
		}
		s := runAt(t, now, state, "reports", "summary", "--json", dom)
		var sum tlsrptview.Summary
		json.Unmarshal([]byte(s.stdout), &sum)
		return r.code, sum, v
	}
	promote := func(now time.Time) result {
		return runAt(t, now, state, append(append([]string{"policy", "promote"}, flags()...), dom)...)
	}
	reasons := func(v map[string]any) string { b, _ := json.Marshal(v["reasons"]); return string(b) }

	// 1. No report yet: not enough data, and promote refuses.
	code, sum, v := verdict(now)
	if code != ExitUndetermined || v["status"] != "not-enough-data" || v["policy_id"] != "1" {
		t.Fatalf("step 1: exit %d %v", code, v)
	}
	if p := promote(now); p.code != ExitFindings || !strings.Contains(p.stdout, "REFUSED") {
		t.Fatalf("step 1 promote: %d\n%s", p.code, p.stdout)
	}

	// 2. A backup MX appears that the policy does not cover, and a week of
	// reports from two organisations show validation failures on it.
	l.MustMX(t, "backup.journey.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	l.DNS.MustAdd(t, "journey.test. 300 IN MX 20 backup.journey.test.")
	var paths []string
	for i := 1; i <= 7; i++ {
		d := now.Truncate(24*time.Hour).AddDate(0, 0, -i)
		for _, org := range []string{"google.com", "microsoft.com"} {
			paths = append(paths, writeReport(t, files, dailyReport(org, dom, d, []string{"mx1.journey.test"}, 40,
				tlsrpt.FailureDetail{ResultType: tlsrpt.ValidationFailure, ReceivingMXHostname: "backup.journey.test", SendingMTAIP: "192.0.2.1", FailedSessions: 3})))
		}
	}
	if r := runAt(t, now, state, append([]string{"reports", "import"}, paths...)...); r.code != ExitOK || !strings.Contains(r.stdout, "14 report(s): 14 new") {
		t.Fatalf("import: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	code, sum, v = verdict(now)
	if code != ExitFindings || v["status"] != "not-ready" || !strings.Contains(reasons(v), "MX not covered by policy: backup.journey.test") ||
		!strings.Contains(reasons(v), "validation-failure") {
		t.Fatalf("step 2: exit %d %s", code, reasons(v))
	}
	if len(sum.Types) != 1 || sum.Types[0].Failed != 42 || sum.Types[0].ByMX["backup.journey.test"] != 42 {
		t.Errorf("step 2 summary %+v", sum)
	}
	if p := promote(now); p.code != ExitFindings || !strings.Contains(p.stdout, "TLS-RPT reports (not-ready)") || strings.Contains(p.stdout, "mode: enforce") {
		t.Fatalf("step 2 promote: %d\n%s", p.code, p.stdout)
	}

	// 3. The fix: the policy names the backup (a new id). Right away the
	// failures are explained, but the evidence is for the older policy.
	body.Store("version: STSv1\r\nmode: testing\r\nmx: mx1.journey.test\r\nmx: backup.journey.test\r\nmax_age: 86400\r\n")
	l.DNS.Remove("_mta-sts.journey.test", dns.TypeTXT)
	l.DNS.MustAdd(t, `_mta-sts.journey.test. 300 IN TXT "v=STSv1; id=2"`)
	code, _, v = verdict(now)
	if code == ExitOK || v["policy_id"] != "2" || v["older_policy"] == nil || v["sessions"] != float64(0) {
		t.Fatalf("step 3: exit %d %v", code, v)
	}

	// 4. Two weeks of clean reports about the fixed policy: ready, and
	// promote prints the enforce policy.
	later := now.AddDate(0, 0, 14)
	paths = nil
	for i := 1; i <= 14; i++ {
		d := later.Truncate(24*time.Hour).AddDate(0, 0, -i)
		for _, org := range []string{"google.com", "microsoft.com"} {
			paths = append(paths, writeReport(t, files, dailyReport(org, dom, d, []string{"mx1.journey.test", "backup.journey.test"}, 40)))
		}
	}
	if r := runAt(t, later, state, append([]string{"reports", "import", "--json"}, paths...)...); r.code != ExitOK {
		t.Fatalf("import: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	code, _, v = verdict(later)
	if code != ExitOK || v["status"] != "ready" || v["sessions"] != float64(28*40) {
		t.Fatalf("step 4: exit %d %v", code, v)
	}
	if p := promote(later); p.code != ExitOK || !strings.Contains(p.stdout, "mode: enforce") {
		t.Fatalf("step 4 promote: %d\n%s%s", p.code, p.stdout, p.stderr)
	}
}

// reports import, list --json, show and summary --json on the real
// samples (read at run time; the file channel), through the binary.
func TestReportsCLISamples(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".md") })
	st := filepath.Join(t.TempDir(), "r.db")
	// The mails' DKIM keys cannot be looked up in the lab: accepted
	// explicitly, as an admin importing an archive does.
	d := lab.NewDNS(t)
	imp := run(t, append([]string{"reports", "import", "--store", st, "--resolver", d.Addr(), "--accept-unverified"}, files...)...)
	if imp.code != ExitOK || !strings.Contains(imp.stdout, fmt.Sprintf("%d report(s)", len(files))) {
		t.Fatalf("import: %d\n%s%s", imp.code, imp.stdout, imp.stderr)
	}
	l := run(t, "reports", "list", "--store", st, "--json")
	if l.code != ExitOK {
		t.Fatalf("list: %d %s", l.code, l.stderr)
	}
	var items []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.stdout), "\n") {
		var it map[string]any
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		items = append(items, it)
	}
	if len(items) < 30 {
		t.Fatalf("%d reports listed", len(items))
	}
	// The documented fields (docs/json.md), on every line.
	for _, it := range items {
		for _, f := range []string{"organization", "report_id", "start", "end", "channel", "dkim", "notes", "policies"} {
			if _, ok := it[f]; !ok {
				t.Errorf("list item lacks %s: %v", f, it)
			}
		}
		for _, p := range it["policies"].([]any) {
			for _, f := range []string{"type", "domain", "mx_patterns", "successful", "failed", "failures_by_result_type", "failures_by_receiving_mx"} {
				if _, ok := p.(map[string]any)[f]; !ok {
					t.Errorf("policy lacks %s: %v", f, p)
				}
			}
		}
	}
	// Mail.ru's report: summary says 1 failure, details 2.
	var mailru map[string]any
	for _, it := range items {
		if it["organization"] == "Mail.ru" || strings.Contains(fmt.Sprint(it["report_id"]), "mail.ru") {
			mailru = it
		}
	}
	if mailru == nil {
		t.Fatal("no Mail.ru report")
	}
	p := mailru["policies"].([]any)[0].(map[string]any)
	if p["failed"] != float64(1) || p["details_failed"] != float64(2) || !strings.Contains(fmt.Sprint(mailru["notes"]), "totals-disagree") {
		t.Errorf("Mail.ru: %v", mailru)
	}
	show := run(t, "reports", "show", "--store", st, fmt.Sprint(mailru["id"]))
	if show.code != ExitOK || !strings.Contains(show.stdout, "the failure details add up to 2") || !strings.Contains(show.stdout, "received") {
		t.Errorf("show: %d\n%s", show.code, show.stdout)
	}
	raw := run(t, "reports", "show", "--store", st, "--raw", fmt.Sprint(mailru["id"]))
	if raw.code != ExitOK || !strings.Contains(raw.stdout, "TLS-Report-Domain") && !strings.Contains(raw.stdout, "organization-name") {
		t.Errorf("show --raw: %d %.200s", raw.code, raw.stdout)
	}
}

// summary --json sums per policy type after deduplication and never adds
// sts and tlsa (B-1): Microsoft's DANE domain report counts 7/6 once.
func TestReportsSummaryJSON(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	state, files := t.TempDir(), t.TempDir()
	d := now.Truncate(24*time.Hour).AddDate(0, 0, -1)
	f := tlsrpt.FailureDetail{ResultType: tlsrpt.ValidationFailure, ReceivingMXHostname: "mx.dane.test", FailedSessions: 6}
	r := dailyReport("Microsoft Corporation", "dane.test", d, []string{"mx.dane.test"}, 1, f)
	r.Policies = append(r.Policies, tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: "dane.test", Strings: []string{"3 1 1 ABCD"}, Successful: 1, Failed: 6, Failures: []tlsrpt.FailureDetail{f}})
	p := writeReport(t, files, r)
	if res := runAt(t, now, state, "reports", "import", p, p); res.code != ExitOK || !strings.Contains(res.stdout, "1 new, 1 duplicate") {
		t.Fatalf("import: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res := runAt(t, now, state, "reports", "summary", "--json", "--days", "7", "dane.test")
	var sum tlsrptview.Summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Types) != 2 || sum.Sessions != 7 || sum.Failed != 6 {
		t.Fatalf("summary %+v", sum)
	}
	for _, ty := range sum.Types {
		if ty.Successful+ty.Failed != 7 || ty.Failed != 6 || ty.ByResult["validation-failure"] != 6 || ty.ByMX["mx.dane.test"] != 6 || ty.Reports != 1 {
			t.Errorf("%s: %+v", ty.Type, ty)
		}
	}
	text := runAt(t, now, state, "reports", "summary", "dane.test")
	if !strings.Contains(text.stdout, "per domain (each session once): 7 sessions, 6 failed") {
		t.Errorf("text summary:\n%s", text.stdout)
	}
	// Deleting the domain deletes its reports.
	if del := runAt(t, now, state, "reports", "delete", "dane.test"); !strings.Contains(del.stdout, "deleted 1 report") {
		t.Errorf("delete: %s", del.stdout)
	}
	if l := runAt(t, now, state, "reports", "list"); !strings.Contains(l.stdout, "0 report(s)") {
		t.Errorf("after delete: %s", l.stdout)
	}
}

// reports import reads an mbox file and a Maildir folder (cur/ and new/;
// tmp/ holds mail still being delivered and is skipped): every report
// mail in them is stored once, an unsigned one counted as the admin's own
// import.
func TestReportsImportMailboxes(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	state, files := t.TempDir(), t.TempDir()
	mail := func(i int) string {
		r := dailyReport("reporter.test", "box.test", now.Truncate(24*time.Hour).AddDate(0, 0, -i), []string{"mx.box.test"}, int64(10*i))
		m := lab.ReportMail("reporter.test", "tlsrpt@box.test", "box.test", r.ReportID, gzipReport(t, r))
		return strings.ReplaceAll(m, "\r\n", "\n") // as mbox files and Maildir folders keep mail
	}
	mbox := filepath.Join(files, "reports.mbox")
	os.WriteFile(mbox, []byte("From reporter.test Mon Jun 29 01:00:00 2026\n"+mail(1)+"\nFrom reporter.test Tue Jun 30 01:00:00 2026\n"+mail(2)+"\n"), 0o644)
	md := filepath.Join(files, "Maildir")
	for sub, i := range map[string]int{"cur": 3, "new": 4, "tmp": 5} {
		os.MkdirAll(filepath.Join(md, sub), 0o755)
		os.WriteFile(filepath.Join(md, sub, fmt.Sprintf("17000000%d.M1P1.host", i)), []byte(mail(i)), 0o644)
	}
	res := runAt(t, now, state, "reports", "import", "--resolver", lab.NewDNS(t).Addr(), mbox, md)
	if res.code != ExitOK || !strings.Contains(res.stdout, "4 new") {
		t.Fatalf("import: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runAt(t, now, state, "reports", "summary", "--json", "--days", "7", "box.test")
	var sum tlsrptview.Summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatalf("%v: %s", err, res.stdout)
	}
	// Days 1 to 4: 10+20+30+40 sessions; day 5 is still in tmp/.
	if len(sum.Types) != 1 || sum.Types[0].Successful != 100 || sum.Types[0].Reports != 4 || sum.States[store.ReportCounted] != 4 {
		t.Errorf("summary %+v", sum)
	}
	// Again: nothing new.
	if again := runAt(t, now, state, "reports", "import", "--resolver", lab.NewDNS(t).Addr(), mbox, md); again.code != ExitOK || !strings.Contains(again.stdout, "4 duplicate") {
		t.Errorf("second import: %d\n%s%s", again.code, again.stdout, again.stderr)
	}
}
