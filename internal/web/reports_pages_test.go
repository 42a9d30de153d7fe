package web

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

// dailyReport is one reporter's report about dom for day: sts and tlsa
// sessions (a DANE domain reported under both, RFC 8460 §4.3), a few
// without a policy, and failed certificate-expired sessions on mx.
func dailyReport(org, dom, mx string, day time.Time, ok, failed int64) *tlsrpt.Report {
	var fails []tlsrpt.FailureDetail
	if failed > 0 {
		fails = []tlsrpt.FailureDetail{{ResultType: tlsrpt.CertificateExpired, SendingMTAIP: "192.0.2.7", ReceivingMXHostname: mx, FailedSessions: failed}}
	}
	return &tlsrpt.Report{OrganizationName: org, ContactInfo: "tlsrpt@example.net", ReportID: fmt.Sprintf("%s-%s", day.Format(time.DateOnly), org),
		Start: day, End: day.Add(24*time.Hour - time.Second),
		Policies: []tlsrpt.Policy{
			{Type: tlsrpt.PolicySTS, Domain: dom, Strings: []string{"version: STSv1", "mode: testing", "mx: *." + dom, "max_age: 604800"},
				MXPatterns: []string{"*." + dom}, Successful: ok, Failed: failed, DetailsFailed: failed, Failures: fails},
			{Type: tlsrpt.PolicyTLSA, Domain: dom, Strings: []string{"3 1 1 0123abcd"}, Successful: ok, Failed: 0},
			{Type: tlsrpt.PolicyNotFound, Domain: dom, Successful: 3},
		}}
}

type reportsFixture struct {
	h      *harness
	st     *sqlstore.DB
	clock  *storetest.Clock
	d      store.Domain
	page   string
	cur    tlsrptagg.Current
	raw    []byte // the raw bytes of report rawID
	rawID  store.ReportID
	other  store.ReportID // a report about another domain
	asAnn  []string
	asBob  []string
	failMX string
	carl   store.UserID // a third account, with no domain
}

func newReportsFixture(t *testing.T) *reportsFixture {
	clock := storetest.NewClock(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	bob, _ := st.CreateUser(t.Context(), "bob@example.test", "x")
	carl, _ := st.CreateUser(t.Context(), "carl@example.test", "x")
	f := &reportsFixture{carl: carl.ID, st: st, clock: clock, asAnn: []string{"Cookie", "session=ann"}, asBob: []string{"Cookie", "session=bob"}, failMX: "mx1.example.com"}
	f.h = newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: tokenUsers{"ann": {ann.ID, nil}, "bob": {bob.ID, nil},
		"carl": {carl.ID, nil}, "carl-api": {carl.ID, []store.Scope{store.ScopeRead, store.ScopeManage}}, "bob-api": {bob.ID, []store.Scope{store.ScopeRead, store.ScopeManage}},
		"carl-read": {carl.ID, []store.Scope{store.ScopeRead}}, "carl-scan": {carl.ID, []store.Scope{store.ScopeScan}}}, Now: clock.Now}})
	f.d, _ = st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	st.AddDomain(t.Context(), store.NewDomain{UserID: bob.ID, Name: "bob.example"})
	doc := difftest.Healthy(clock.Now())
	sc := saveScan(t, st, f.d.ID, doc)
	f.cur = monitor.Current(doc, sc.CreatedAt)
	f.page = fmt.Sprintf("/domains/%d/reports", f.d.ID)

	add := func(r *tlsrpt.Report, hold bool) store.StoredTLSRPT {
		raw, _ := json.Marshal(r)
		s, _, err := st.AddTLSRPTReport(t.Context(), store.NewTLSRPTReport{Report: r, Raw: raw, Hold: hold,
			Receipt: store.ReportReceipt{Channel: "https", DKIM: "none", ReceivedAt: r.End.Add(2 * time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	today := tlsrptagg.Day(clock.Now())
	for i := 1; i <= 14; i++ {
		day := today.AddDate(0, 0, -i)
		var failed int64
		if i == 3 || i == 9 {
			failed = 4
		}
		s := add(dailyReport("google.com", "example.com", f.failMX, day, 500, failed), false)
		// A reporter whose name is a spreadsheet formula.
		add(dailyReport("=HYPERLINK(\"https://evil.example\")", "example.com", f.failMX, day, 40, 0), false)
		if i == 3 {
			f.rawID = s.ID
			f.raw, _ = json.Marshal(s.Report)
		}
	}
	// A report about another domain, and a held one about example.com.
	f.other = add(dailyReport("google.com", "bob.example", "mx.bob.example", today.AddDate(0, 0, -2), 10, 0), false).ID
	held := dailyReport("microsoft.com", "example.com", f.failMX, today.AddDate(0, 0, -1), 10, 0)
	add(held, true)
	// Ann proves she controls example.com, as a user does.
	verifyDomain(t, f.h, f.d, f.asAnn)
	return f
}

// verifyDomain publishes the TXT record the verification page of d shows
// in the lab DNS and presses "Verify now" as the account of as.
func verifyDomain(t *testing.T, h *harness, d store.Domain, as []string) {
	t.Helper()
	name, value := verifyRecord(t, h, d, as)
	h.lab.DNS.MustAdd(t, fmt.Sprintf("%s. 300 IN TXT %q", name, value))
	r := h.do("POST", fmt.Sprintf("/domains/%d/verify", d.ID), "application/x-www-form-urlencoded", "", as...)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), "The record was found.") {
		t.Fatalf("verifying %s: %d\n%s", d.Name, r.StatusCode, r.body)
	}
}

var recordRE = regexp.MustCompile(`<th scope="row">Name</th><td><code>([^<]+)</code>.*?<th scope="row">Value</th><td><code>([^<]+)</code>`)

// verifyRecord reads the record to publish from the verification page.
func verifyRecord(t *testing.T, h *harness, d store.Domain, as []string) (name, value string) {
	t.Helper()
	r := h.do("GET", fmt.Sprintf("/domains/%d/verify", d.ID), "", "", as...)
	m := recordRE.FindStringSubmatch(strings.ReplaceAll(string(r.body), "\n", " "))
	if r.StatusCode != 200 || m == nil {
		t.Fatalf("verification page of %s: %d\n%s", d.Name, r.StatusCode, r.body)
	}
	return html.UnescapeString(m[1]), html.UnescapeString(m[2])
}

// TestReportsPage: a saved domain's TLS-RPT page shows the verdict, the
// daily sessions per policy type, the failures with their explanations,
// the reporters and the reports with the numbers tlsrptview gives for the
// same store; another account's domain is "not found" exactly as an
// unknown one is.
func TestReportsPage(t *testing.T) {
	f := newReportsFixture(t)
	ctx := t.Context()
	view := &tlsrptview.View{Store: f.st, Now: f.clock.Now}
	w := tlsrptview.LastDays(f.clock.Now(), 14)
	sum, err := view.Summary(ctx, "example.com", w)
	if err != nil {
		t.Fatal(err)
	}
	verdict, _ := view.Readiness(ctx, "example.com", f.cur, tlsrptagg.Thresholds{})
	failures, _ := view.Failures(ctx, "example.com", w, f.cur)
	reporters, _ := view.Reporters(ctx, "example.com", w)
	if len(failures) == 0 || len(reporters) != 2 || sum.Sessions == 0 {
		t.Fatalf("fixture: %d failures, %d reporters, %d sessions", len(failures), len(reporters), sum.Sessions)
	}

	r := f.h.do("GET", f.page, "", "", f.asAnn...)
	body := string(r.body)
	if r.StatusCode != 200 {
		t.Fatalf("page: %d\n%s", r.StatusCode, body)
	}
	want := []string{
		// The verdict and its evidence (tlsrptview.Readiness).
		map[tlsrptagg.Status]string{tlsrptagg.Ready: "<strong>Ready</strong>", tlsrptagg.NotReady: "<strong>Not ready</strong>", tlsrptagg.NotEnoughData: "<strong>Not enough data</strong>"}[verdict.Status],
		fmt.Sprintf("Evidence: %d session(s), %d failed, from %d report(s) by %d organisation(s)", verdict.Sessions, verdict.Failed, len(verdict.Evidence), len(verdict.Organizations)),
		// The totals, each session once (tlsrptview.Summary).
		fmt.Sprintf("%d session(s), %d failed.", sum.Sessions, sum.Failed),
		// The held report, said honestly.
		"1 report(s) about example.com in this window are <strong>held</strong>",
		// The chart with its text alternatives, and a link from the domain page.
		`<svg class="chart" role="img" aria-labelledby="chart-title chart-desc"`, `<title id="chart-title">`, `<desc id="chart-desc">`,
		"(2 day(s) with failures)",
	}
	for _, reason := range verdict.Reasons {
		want = append(want, html.EscapeString(reason.Text))
	}
	// Each day's cells per policy type, as tlsrptview's daily series.
	for _, typ := range chartTypes {
		for _, dt := range sum.Daily[typ] {
			cell := fmt.Sprintf("%d / 0</td>", dt.Successful)
			if dt.Failed > 0 {
				cell = fmt.Sprintf("%d / <strong class=\"failed\">%d failed</strong>", dt.Successful, dt.Failed)
			}
			want = append(want, cell)
		}
	}
	if len(sum.Daily[tlsrpt.PolicyNotFound]) != 14 || !strings.Contains(body, "<th scope=\"row\">"+w.From.Format(time.DateOnly)+"</th><td>540 / 0</td><td>540 / 0</td><td>6 / 0</td>") {
		t.Errorf("the first day's row is not sts, tlsa and no-policy-found apart:\n%s", body)
	}
	for _, e := range failures {
		want = append(want, fmt.Sprintf("<td><code>%s</code></td><td><code>%s</code></td><td>%d</td>", e.MX, e.ResultType, e.Count),
			fmt.Sprintf("<strong class=\"label-%s\">%s</strong>: %s", e.Label, e.Label, html.EscapeString(e.Why)))
	}
	for _, rp := range reporters {
		want = append(want, fmt.Sprintf("<th scope=\"row\">%s</th><td>%d</td><td>%d</td><td>%d</td>", html.EscapeString(rp.Organization), rp.Reports, rp.Sessions, rp.Failed))
	}
	want = append(want, fmt.Sprintf(`href="/domains/%d/reports/%d/raw" download`, f.d.ID, f.rawID))
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(body, "bob.example") {
		t.Error("the page shows a report about another domain")
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
	if r := f.h.do("GET", fmt.Sprintf("/domains/%d", f.d.ID), "", "", f.asAnn...); !strings.Contains(string(r.body), `href="`+f.page+`"`) {
		t.Error("the domain page does not link to its reports")
	}

	// The window: ?days= is bounded.
	if r := f.h.do("GET", f.page+"?days=7", "", "", f.asAnn...); r.StatusCode != 200 || !strings.Contains(string(r.body), `<option value="7" selected>`) {
		t.Errorf("days=7: %d", r.StatusCode)
	}
	// A year draws thin bars: the chart stays about 3,000 units wide.
	if r := f.h.do("GET", f.page+"?days=366", "", "", f.asAnn...); r.StatusCode != 200 || !strings.Contains(string(r.body), `viewBox="0 0 2992 220"`) {
		t.Errorf("days=366: %d", r.StatusCode)
	}
	for _, bad := range []string{"0", "367", "x", "-1"} {
		if r := f.h.do("GET", f.page+"?days="+bad, "", "", f.asAnn...); r.StatusCode != 400 {
			t.Errorf("days=%s: %d", bad, r.StatusCode)
		}
		if r := f.h.do("GET", f.page+".json?days="+bad, "", "", f.asAnn...); r.StatusCode != 400 {
			t.Errorf("json days=%s: %d", bad, r.StatusCode)
		}
	}

	// Ownership: bob gets the same 404 for ann's domain as for an unknown
	// id, on every reports address; anonymous goes to the login page.
	unknown := f.h.do("GET", "/domains/99999/reports", "", "", f.asBob...)
	if unknown.StatusCode != 404 {
		t.Fatalf("unknown id: %d", unknown.StatusCode)
	}
	for _, p := range []string{f.page, f.page + ".json", f.page + ".csv", fmt.Sprintf("%s/%d/raw", f.page, f.rawID)} {
		r := f.h.do("GET", p, "", "", f.asBob...)
		if r.StatusCode != 404 || !bytes.Equal(r.body, unknown.body) {
			t.Errorf("bob GET %s: %d\n%s", p, r.StatusCode, r.body)
		}
		if r := f.h.do("GET", p, "", ""); r.StatusCode != 303 || !strings.HasPrefix(r.Header.Get("Location"), "/login?next=") {
			t.Errorf("anonymous GET %s: %d", p, r.StatusCode)
		}
	}
}

// TestReportsExports: the JSON export carries tlsrptview's numbers, the
// CSV tables defuse spreadsheet formulas, and a raw report is a JSON
// download of the stored bytes, only for a report about the domain.
func TestReportsExports(t *testing.T) {
	f := newReportsFixture(t)
	view := &tlsrptview.View{Store: f.st, Now: f.clock.Now}
	w := tlsrptview.LastDays(f.clock.Now(), 30)
	sum, _ := view.Summary(t.Context(), "example.com", w)

	r := f.h.do("GET", f.page+".json?days=30", "", "", f.asAnn...)
	var doc struct {
		SchemaVersion int                     `json:"schema_version"`
		Days          int                     `json:"days"`
		Summary       tlsrptview.Summary      `json:"summary"`
		Readiness     tlsrptagg.Verdict       `json:"readiness"`
		Failures      []tlsrptagg.Explanation `json:"failures"`
		Reporters     []tlsrptview.Reporter   `json:"reporters"`
		Reports       []tlsrptview.Item       `json:"reports"`
	}
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(r.Header.Get("Content-Disposition"), `attachment; filename="example.com-tlsrpt-`) {
		t.Fatalf("json: %d %v", r.StatusCode, r.Header)
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion != 1 || doc.Days != 30 || doc.Summary.Sessions != sum.Sessions || doc.Summary.Failed != sum.Failed || len(doc.Summary.Types) != 3 ||
		len(doc.Reports) != 2*14+1 || len(doc.Reporters) != 2 || len(doc.Failures) == 0 || doc.Readiness.Status == "" {
		t.Errorf("json export: schema %d, %d days, %d/%d sessions, %d types, %d reports, %d reporters, %d failures, verdict %q",
			doc.SchemaVersion, doc.Days, doc.Summary.Sessions, sum.Sessions, len(doc.Summary.Types), len(doc.Reports), len(doc.Reporters), len(doc.Failures), doc.Readiness.Status)
	}

	table := func(name string) [][]string {
		t.Helper()
		r := f.h.do("GET", f.page+".csv?table="+name, "", "", f.asAnn...)
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment;") {
			t.Fatalf("csv %s: %d %v", name, r.StatusCode, r.Header)
		}
		rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	// The reporter named like a formula is text (a leading apostrophe),
	// in every table that names it.
	evil := `'=HYPERLINK("https://evil.example")`
	rep := table("reporters")
	if rep[0][0] != "organization" || len(rep) != 3 {
		t.Fatalf("reporters csv: %q", rep)
	}
	found := false
	for _, row := range rep[1:] {
		if strings.HasPrefix(row[0], "=") {
			t.Errorf("formula cell not escaped: %q", row)
		}
		found = found || row[0] == evil
	}
	if !found {
		t.Errorf("reporters csv lacks %s: %q", evil, rep)
	}
	for _, row := range table("reports")[1:] {
		if strings.HasPrefix(row[1], "=") {
			t.Errorf("reports csv: formula cell not escaped: %q", row)
		}
	}
	daily := table("daily")
	if len(daily) != 1+3*14 || strings.Join(daily[0], ",") != "day,policy_type,successful,failed,sessions" {
		t.Errorf("daily csv: %q", daily)
	}
	fails := table("failures")
	if len(fails) < 2 || fails[1][1] != f.failMX || fails[1][2] != string(tlsrpt.CertificateExpired) || fails[1][6] == "" || fails[1][7] == "" {
		t.Errorf("failures csv: %q", fails)
	}
	if r := f.h.do("GET", f.page+".csv?table=secrets", "", "", f.asAnn...); r.StatusCode != 400 {
		t.Errorf("unknown table: %d", r.StatusCode)
	}
	if got := csvCell("-2+3"); got != "'-2+3" {
		t.Errorf("csvCell(-2+3) = %q", got)
	}
	if got := csvCell("@SUM(A1)"); got != "'@SUM(A1)" {
		t.Errorf("csvCell(@SUM) = %q", got)
	}

	// The raw report: the stored bytes, a JSON download, never HTML.
	r = f.h.do("GET", fmt.Sprintf("%s/%d/raw", f.page, f.rawID), "", "", f.asAnn...)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Content-Type-Options") != "nosniff" ||
		r.Header.Get("Content-Disposition") != fmt.Sprintf(`attachment; filename="example.com-tlsrpt-%d.json"`, f.rawID) || !bytes.Equal(r.body, f.raw) {
		t.Errorf("raw: %d %v\n%s", r.StatusCode, r.Header, r.body)
	}
	// Another domain's report through ann's domain, and an unknown one.
	for _, id := range []string{fmt.Sprint(f.other), "99999", "x"} {
		if r := f.h.do("GET", f.page+"/"+id+"/raw", "", "", f.asAnn...); r.StatusCode != 404 {
			t.Errorf("raw %s: %d", id, r.StatusCode)
		}
	}
}

// TestBrowserReportsPage: the reports page in Chromium, checked by
// axe-core (WCAG 2.2 AA).
func TestBrowserReportsPage(t *testing.T) {
	b := newBrowser(t)
	f := newReportsFixture(t)
	ctx := b.tab(true)
	b.do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "session", Value: "ann", URL: f.h.srv.URL})
		return err
	}))
	b.do(ctx, chromedp.Navigate(f.h.srv.URL+f.page), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	b.shot(ctx, "reports")
	b.checkA11y(ctx, "reports page")

	// Carl saved the same name without verifying it: his reports page is
	// the verification page, with the record to publish.
	d, err := f.st.AddDomain(t.Context(), store.NewDomain{UserID: f.carl, Name: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	b.do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "session", Value: "carl", URL: f.h.srv.URL})
		return err
	}))
	b.do(ctx, chromedp.Navigate(f.h.srv.URL+fmt.Sprintf("/domains/%d/reports", d.ID)), chromedp.WaitVisible(chromedp.CSS("table.record")))
	b.shot(ctx, "reports-verify")
	b.checkA11y(ctx, "verification page")
	// "Verify now" without the record: the page says it was not found.
	b.submit(ctx, `form[action$="/verify"] button`, "table.record")
	if text := b.text(ctx, "main"); !strings.Contains(text, "Not found.") {
		t.Errorf("after Verify now without the record: %s", text)
	}
	b.checkA11y(ctx, "verification page after a check")
}
