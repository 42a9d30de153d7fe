package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

// tokenUsers authenticates "Bearer <name>" with fixed tokens, as the
// accounts part does with hashed ones.
type tokenUsers map[string]struct {
	user   store.UserID
	scopes []store.Scope
}

type slowDown time.Duration

func (slowDown) Error() string               { return "too many wrong tokens" }
func (s slowDown) RetryAfter() time.Duration { return time.Duration(s) }

func (u tokenUsers) APIUser(r *http.Request, scope store.Scope) (store.UserID, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "limited" {
		return 0, slowDown(30 * time.Second)
	}
	t, found := u[tok]
	if !ok || !found {
		return 0, ErrUnauthenticated
	}
	if !slices.Contains(t.scopes, scope) {
		return 0, ErrScope
	}
	return t.user, nil
}

// PageUser reads the "session" cookie, naming a token's user.
func (u tokenUsers) PageUser(r *http.Request) (store.UserID, bool) {
	c, err := r.Cookie("session")
	if err != nil {
		return 0, false
	}
	t, ok := u[c.Value]
	return t.user, ok
}

// saveScan stores a finished scan of a domain with doc as its report.
func saveScan(t *testing.T, st *sqlstore.DB, d store.DomainID, doc *report.Document) store.Scan {
	t.Helper()
	sc, err := st.CreateScan(t.Context(), store.NewScan{DomainID: d, Trigger: store.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(doc)
	var fs []store.Finding
	for _, f := range doc.Findings {
		fs = append(fs, store.Finding{ID: f.ID, Severity: f.Severity, Component: f.Component, Subject: f.Subject, Message: f.Message})
	}
	done, err := st.FinishScan(t.Context(), sc.ID, store.ScanResult{State: store.ScanDone, Report: raw, Grade: *doc.Grade, Findings: fs, CatalogVersion: "old"})
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// TestMonitoringAPI: saved domains through the JSON API with tokens —
// scopes, another account's domain invisible, scans and their reports, a
// diff, rescan now with its cooldown, mute — every answer checked against
// openapi.yaml.
func TestMonitoringAPI(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	bob, _ := st.CreateUser(t.Context(), "bob@example.test", "x")
	all := []store.Scope{store.ScopeRead, store.ScopeScan, store.ScopeManage}
	users := tokenUsers{"ann": {ann.ID, all}, "ann-read": {ann.ID, []store.Scope{store.ScopeRead}}, "bob": {bob.ID, all}}
	var pokes atomic.Int32
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: users, Now: clock.Now, Poke: func() { pokes.Add(1) }}})
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// Authentication and scopes.
	if r := h.do("GET", "/api/v1/domains", "", ""); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %v", r.StatusCode, r.Header)
	}
	if r := h.do("GET", "/api/v1/domains", "", "", auth("wrong")...); r.StatusCode != 401 {
		t.Errorf("wrong token: %d", r.StatusCode)
	}
	if r := h.do("GET", "/api/v1/domains", "", "", auth("limited")...); r.StatusCode != 429 || r.Header.Get("Retry-After") != "31" {
		t.Errorf("rate limited: %d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := h.do("POST", "/api/v1/domains", "application/json", `{"domain":"example.com"}`, auth("ann-read")...); r.StatusCode != 403 {
		t.Errorf("read token adding a domain: %d", r.StatusCode)
	}

	// Add, normalised (the verified owner gets an e-mail channel with the
	// first domain); a duplicate; an invalid name.
	st.MarkEmailVerified(t.Context(), ann.ID)
	r := h.do("POST", "/api/v1/domains", "application/json", `{"domain":"Postmaster@Example.COM."}`, auth("ann")...)
	if r.StatusCode != 201 {
		t.Fatalf("add: %d %s", r.StatusCode, r.body)
	}
	var dom domainResource
	json.Unmarshal(r.body, &dom)
	if dom.Domain != "example.com" || dom.IntervalSecs != 86400 || r.Header.Get("Location") != fmt.Sprintf("/api/v1/domains/%d", dom.ID) ||
		!dom.NextScanAt.Equal(clock.Now()) || pokes.Load() != 1 {
		t.Errorf("added %+v, location %q", dom, r.Header.Get("Location"))
	}
	if chans, _ := st.ListChannels(t.Context(), ann.ID); len(chans) != 1 || chans[0].Target != "ann@example.test" || chans[0].VerifiedAt.IsZero() {
		t.Errorf("default channel: %+v", chans)
	}
	if r := h.do("POST", "/api/v1/domains", "application/json", `{"domain":"example.com"}`, auth("ann")...); r.StatusCode != 409 {
		t.Errorf("duplicate: %d", r.StatusCode)
	}
	if r := h.do("POST", "/api/v1/domains", "application/json", `{"domain":"exa mple..com"}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("invalid domain: %d", r.StatusCode)
	}
	if r := h.do("POST", "/api/v1/domains", "application/json", `{"domain":"example.org","interval_seconds":60}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("a one-minute interval: %d", r.StatusCode)
	}

	// Another account sees nothing of it.
	path := fmt.Sprintf("/api/v1/domains/%d", dom.ID)
	for _, p := range []string{path, path + "/scans", path + "/diff"} {
		if r := h.do("GET", p, "", "", auth("bob")...); r.StatusCode != 404 {
			t.Errorf("bob GET %s: %d", p, r.StatusCode)
		}
	}
	if r := h.do("DELETE", path, "", "", auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob DELETE: %d", r.StatusCode)
	}
	if r := h.do("GET", "/api/v1/domains", "", "", auth("bob")...); !strings.Contains(string(r.body), `"domains":[]`) {
		t.Errorf("bob's list: %s", r.body)
	}

	// A diff needs two scans.
	if r := h.do("GET", path+"/diff", "", "", auth("ann-read")...); r.StatusCode != 409 {
		t.Errorf("diff without scans: %d", r.StatusCode)
	}
	healthy := difftest.Healthy(clock.Now())
	s1 := saveScan(t, st, store.DomainID(dom.ID), healthy)
	clock.Advance(24 * time.Hour)
	broken := difftest.Healthy(clock.Now())
	broken.Policy.MX = append(broken.Policy.MX, "mx9.example.com")
	difftest.AddFinding(broken, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3.example.com is not covered")
	difftest.SetGrade(broken, "D")
	s2 := saveScan(t, st, store.DomainID(dom.ID), broken)

	r = h.do("GET", path+"/scans?limit=1", "", "", auth("ann-read")...)
	var page struct {
		Scans []scanBrief `json:"scans"`
		Next  *string     `json:"next_cursor"`
	}
	json.Unmarshal(r.body, &page)
	if r.StatusCode != 200 || len(page.Scans) != 1 || page.Scans[0].ID != int64(s2.ID) || page.Next == nil || !page.Scans[0].RulesChanged {
		t.Fatalf("scans page 1: %d %s", r.StatusCode, r.body)
	}
	r = h.do("GET", path+"/scans?limit=1&cursor="+*page.Next, "", "", auth("ann-read")...)
	json.Unmarshal(r.body, &page)
	if len(page.Scans) != 1 || page.Scans[0].ID != int64(s1.ID) {
		t.Errorf("scans page 2: %s", r.body)
	}
	if r := h.do("GET", path+"/scans?cursor=garbage", "", "", auth("ann-read")...); r.StatusCode != 400 {
		t.Errorf("bad cursor: %d", r.StatusCode)
	}

	r = h.do("GET", fmt.Sprintf("%s/scans/%d", path, s2.ID), "", "", auth("ann-read")...)
	var one struct {
		Grade  *string         `json:"grade"`
		Report report.Document `json:"report"`
		Pruned bool            `json:"pruned"`
	}
	json.Unmarshal(r.body, &one)
	if r.StatusCode != 200 || one.Pruned || *one.Grade != "D" || one.Report.Policy == nil || len(one.Report.Policy.MX) != len(broken.Policy.MX) {
		t.Errorf("scan: %d %s", r.StatusCode, truncate(r.body))
	}

	r = h.do("GET", path+"/diff", "", "", auth("ann-read")...)
	var d struct {
		From, To scanBrief
		Added    []report.Finding
		Grade    struct{ From, To string }
		Policy   struct {
			MXAdded []string `json:"mx_added"`
		}
	}
	json.Unmarshal(r.body, &d)
	if r.StatusCode != 200 || d.From.ID != int64(s1.ID) || d.To.ID != int64(s2.ID) || d.Grade.From != "A" || d.Grade.To != "D" ||
		len(d.Added) != 1 || d.Added[0].ID != "mx-not-covered" || !slices.Equal(d.Policy.MXAdded, []string{"mx9.example.com"}) {
		t.Errorf("diff: %d %s", r.StatusCode, truncate(r.body))
	}
	// Explicit and reversed: still older first.
	r = h.do("GET", fmt.Sprintf("%s/diff?from=%d&to=%d", path, s2.ID, s1.ID), "", "", auth("ann-read")...)
	json.Unmarshal(r.body, &d)
	if d.From.ID != int64(s1.ID) {
		t.Errorf("reversed diff: %s", truncate(r.body))
	}

	// Rescan now: the last scan is a moment old, so the cooldown holds;
	// later it is accepted and wakes the worker.
	if r := h.do("POST", path+"/rescan", "", "", auth("ann-read")...); r.StatusCode != 403 {
		t.Errorf("rescan with a read token: %d", r.StatusCode)
	}
	if r := h.do("POST", path+"/rescan", "", "", auth("ann")...); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" || pokes.Load() != 1 {
		t.Errorf("rescan in the cooldown: %d %s", r.StatusCode, r.body)
	}
	clock.Advance(10 * time.Minute)
	if r := h.do("POST", path+"/rescan", "", "", auth("ann")...); r.StatusCode != 202 || pokes.Load() != 2 {
		t.Errorf("rescan: %d %s", r.StatusCode, r.body)
	}
	got, _ := st.GetDomain(t.Context(), store.DomainID(dom.ID))
	if got.NextScanAt.After(clock.Now()) {
		t.Errorf("after rescan now the domain is due at %v", got.NextScanAt)
	}

	// A weekly interval: the next scan moves to the domain's weekly slot.
	r = h.do("PATCH", path, "application/json", `{"interval_seconds":604800}`, auth("ann")...)
	json.Unmarshal(r.body, &dom)
	if r.StatusCode != 200 || dom.IntervalSecs != 604800 || !dom.NextScanAt.Equal(store.NextScan("example.com", 7*24*time.Hour, clock.Now())) {
		t.Errorf("interval: %d %s", r.StatusCode, r.body)
	}
	if r := h.do("PATCH", path, "application/json", `{"interval_seconds":60}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("a one-minute interval: %d", r.StatusCode)
	}
	if r := h.do("PATCH", path, "application/json", `{"interval_seconds":86400}`, auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob changing the interval: %d", r.StatusCode)
	}

	// Mute and unmute.
	until := clock.Now().Add(48 * time.Hour).Format(time.RFC3339)
	if r := h.do("PUT", path+"/mute", "application/json", `{"until":"`+until+`"}`, auth("ann")...); r.StatusCode != 200 || !strings.Contains(string(r.body), until) {
		t.Errorf("mute: %d %s", r.StatusCode, r.body)
	}
	r = h.do("GET", path, "", "", auth("ann-read")...)
	json.Unmarshal(r.body, &dom)
	if dom.MutedUntil == nil || dom.LastScan == nil || dom.LastScan.ID != int64(s2.ID) || dom.PreviousGrade == nil || *dom.PreviousGrade != "A" {
		t.Errorf("domain: %s", r.body)
	}
	if r := h.do("PUT", path+"/mute", "application/json", `{"until":"2020-01-01T00:00:00Z"}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("mute in the past: %d", r.StatusCode)
	}
	if r := h.do("PUT", path+"/mute", "application/json", `{"until":null}`, auth("ann")...); r.StatusCode != 200 || !strings.Contains(string(r.body), `"muted_until":null`) {
		t.Errorf("unmute: %d %s", r.StatusCode, r.body)
	}

	// A scan that did not read the TLS-RPT reports (not_read) does not make
	// the earlier scan's report problems "removed": they are not compared.
	withReports := difftest.Healthy(clock.Now())
	difftest.AddFinding(withReports, "reports-blocking-failure", "error", "tls-rpt-reports", "mx3.example.com", "failing")
	s3 := saveScan(t, st, store.DomainID(dom.ID), withReports)
	blind := difftest.Healthy(clock.Now())
	blind.NotRead = []report.NotRead{{Component: "tls-rpt-reports", Reason: "not verified"}}
	s4 := saveScan(t, st, store.DomainID(dom.ID), blind)
	r = h.do("GET", fmt.Sprintf("%s/diff?from=%d&to=%d", path, s3.ID, s4.ID), "", "", auth("ann-read")...)
	var nd struct {
		Removed     []report.Finding `json:"removed"`
		NotCompared []report.Finding `json:"not_compared"`
	}
	json.Unmarshal(r.body, &nd)
	if r.StatusCode != 200 || len(nd.Removed) != 0 || len(nd.NotCompared) != 1 || nd.NotCompared[0].ID != "reports-blocking-failure" {
		t.Errorf("diff to a scan that did not read the reports: %d %s", r.StatusCode, truncate(r.body))
	}

	// Delete: gone with its history.
	if r := h.do("DELETE", path, "", "", auth("ann")...); r.StatusCode != 204 {
		t.Errorf("delete: %d", r.StatusCode)
	}
	if r := h.do("GET", path, "", "", auth("ann")...); r.StatusCode != 404 {
		t.Errorf("after delete: %d", r.StatusCode)
	}

}

// TestUnsubscribe: the one-click unsubscribe of RFC 8058 works as a
// cross-site POST without login; a GET only shows the button.
func TestUnsubscribe(t *testing.T) {
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	ch, err := st.CreateChannel(t.Context(), store.NewChannel{UserID: u.ID, Kind: store.ChannelEmail, Target: "ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: tokenUsers{}}})
	link := "/unsubscribe/" + ch.UnsubscribeID
	if r := h.do("GET", link, "", ""); r.StatusCode != 200 || !strings.Contains(string(r.body), `action="`+link+`"`) {
		t.Fatalf("GET: %d %s", r.StatusCode, r.body)
	}
	if c, _ := st.GetChannel(t.Context(), ch.ID); !c.DisabledAt.IsZero() {
		t.Fatal("a GET unsubscribed")
	}
	r := h.do("POST", link, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", "Sec-Fetch-Site", "cross-site", "Origin", "https://mail.example.net")
	if r.StatusCode != 200 || !strings.Contains(string(r.body), "ann@example.test") {
		t.Fatalf("one-click POST: %d %s", r.StatusCode, r.body)
	}
	if c, _ := st.GetChannel(t.Context(), ch.ID); c.DisabledAt.IsZero() {
		t.Error("the channel is still on")
	}
	if r := h.do("POST", "/unsubscribe/unknown", "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.StatusCode != 404 {
		t.Errorf("unknown id: %d", r.StatusCode)
	}
	// Other state-changing routes keep the cross-origin protection.
	if r := h.do("POST", "/scan", "application/x-www-form-urlencoded", "domain=example.com", "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST /scan: %d", r.StatusCode)
	}
}

// TestMonitoringPages: the dashboard, a domain's page with its timeline,
// a saved scan (the rules changed since), the diff, rescan now and mute by
// form, for the signed-in owner only, with remote content escaped.
func TestMonitoringPages(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	bob, _ := st.CreateUser(t.Context(), "bob@example.test", "x")
	users := tokenUsers{"ann": {ann.ID, nil}, "bob": {bob.ID, nil}}
	var pokes atomic.Int32
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: users, Now: clock.Now, Poke: func() { pokes.Add(1) }}})
	as := func(who string) []string { return []string{"Cookie", "session=" + who} }

	d, _ := st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.org"})
	s1 := saveScan(t, st, d.ID, difftest.Healthy(clock.Now()))
	clock.Advance(24 * time.Hour)
	broken := difftest.Healthy(clock.Now())
	broken.Policy.MX = append(broken.Policy.MX, "mx9.example.com")
	difftest.AddFinding(broken, "mx-not-covered", "error", "mx", "mx3.example.com", "<script>alert(1)</script> is not covered")
	difftest.SetGrade(broken, "D")
	s2 := saveScan(t, st, d.ID, broken)

	// Not signed in: to the login page, coming back here after.
	if r := h.do("GET", "/domains", "", ""); r.StatusCode != 303 || r.Header.Get("Location") != "/login?next=%2Fdomains" {
		t.Errorf("anonymous dashboard: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	r := h.do("GET", "/domains", "", "", as("ann")...)
	body := string(r.body)
	if r.StatusCode != 200 || !strings.Contains(body, `href="/domains/`+fmt.Sprint(d.ID)+`">example.com</a>`) || !strings.Contains(body, "↓</span> worse") ||
		!strings.Contains(body, "example.org") || !strings.Contains(body, "2 saved domains") {
		t.Errorf("dashboard: %d\n%s", r.StatusCode, body)
	}
	if r := h.do("GET", "/domains", "", "", as("bob")...); strings.Contains(string(r.body), "example.com") {
		t.Error("bob's dashboard shows ann's domain")
	}

	page := fmt.Sprintf("/domains/%d", d.ID)
	for _, p := range []string{page, fmt.Sprintf("%s/scans/%d", page, s2.ID), fmt.Sprintf("%s/diff?from=%d&to=%d", page, s1.ID, s2.ID)} {
		if r := h.do("GET", p, "", "", as("bob")...); r.StatusCode != 404 {
			t.Errorf("bob GET %s: %d", p, r.StatusCode)
		}
	}
	r = h.do("GET", page, "", "", as("ann")...)
	body = string(r.body)
	if r.StatusCode != 200 || !strings.Contains(body, `name="to" value="`+fmt.Sprint(s2.ID)+`"`) || !strings.Contains(body, "Rescan now") ||
		!strings.Contains(body, "Scanned every 1 day") {
		t.Errorf("domain page: %d\n%s", r.StatusCode, body)
	}

	r = h.do("GET", fmt.Sprintf("%s/scans/%d", page, s2.ID), "", "", as("ann")...)
	body = string(r.body)
	if r.StatusCode != 200 || !strings.Contains(body, "The rules have changed since") || strings.Contains(body, "<script>alert") ||
		!strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt; is not covered") {
		t.Errorf("saved scan: %d\n%s", r.StatusCode, body)
	}
	r = h.do("GET", fmt.Sprintf("%s/scans/%d/report.json", page, s2.ID), "", "", as("ann")...)
	var doc report.Document
	if r.StatusCode != 200 || json.Unmarshal(r.body, &doc) != nil || *doc.Grade != "D" || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("report.json: %d %v", r.StatusCode, r.Header)
	}

	r = h.do("GET", fmt.Sprintf("%s/diff?from=%d&to=%d", page, s2.ID, s1.ID), "", "", as("ann")...)
	body = string(r.body)
	if r.StatusCode != 200 || !strings.Contains(body, "A → D (worse)") || !strings.Contains(body, "mx pattern added: <code>mx9.example.com</code>") ||
		!strings.Contains(body, "<code>mx-not-covered</code>") {
		t.Errorf("diff page: %d\n%s", r.StatusCode, body)
	}

	// Rescan now by form: within the cooldown it says so; later it
	// wakes the worker. A cross-site form post is refused.
	if r := h.do("POST", page+"/rescan", "application/x-www-form-urlencoded", "", append(as("ann"), "Sec-Fetch-Site", "cross-site")...); r.StatusCode != 403 {
		t.Errorf("cross-site rescan: %d", r.StatusCode)
	}
	if r := h.do("POST", page+"/rescan", "application/x-www-form-urlencoded", "", as("ann")...); r.StatusCode != 303 || !strings.HasSuffix(r.Header.Get("Location"), "done=cooldown") {
		t.Errorf("rescan in the cooldown: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	clock.Advance(time.Hour)
	if r := h.do("POST", page+"/rescan", "application/x-www-form-urlencoded", "", as("ann")...); r.StatusCode != 303 || !strings.HasSuffix(r.Header.Get("Location"), "done=rescan") || pokes.Load() != 1 {
		t.Errorf("rescan: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := h.do("POST", page+"/mute", "application/x-www-form-urlencoded", "hours=168", as("ann")...); r.StatusCode != 303 {
		t.Errorf("mute: %d", r.StatusCode)
	}
	if got, _ := st.GetDomain(t.Context(), d.ID); !got.MutedUntil.Equal(clock.Now().Add(168 * time.Hour)) {
		t.Errorf("muted until %v", got.MutedUntil)
	}
	if r := h.do("GET", page+"?done=muted", "", "", as("ann")...); !strings.Contains(string(r.body), "Unmute alerts") || !strings.Contains(string(r.body), "Alerts for this domain are muted.") {
		t.Errorf("muted page:\n%s", r.body)
	}
	if r := h.do("POST", page+"/mute", "application/x-www-form-urlencoded", "hours=0", as("bob")...); r.StatusCode != 404 {
		t.Errorf("bob unmuting: %d", r.StatusCode)
	}
}

// TestBrowserMonitoringPages: the dashboard, a domain's page (with a
// notice and muted), a saved scan (with a share link), the diff, the share
// links, a shared scan, a gone link and the unsubscribe page in
// Chromium, each state checked by axe-core (WCAG 2.2 AA).
func TestBrowserMonitoringPages(t *testing.T) {
	b := newBrowser(t)
	clock := storetest.NewClock(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	ch, _ := st.CreateChannel(t.Context(), store.NewChannel{UserID: ann.ID, Kind: store.ChannelEmail, Target: "ann@example.test"})
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: tokenUsers{"ann": {ann.ID, nil}}, Now: clock.Now}})
	d, _ := st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.org"})
	s1 := saveScan(t, st, d.ID, difftest.Healthy(clock.Now()))
	clock.Advance(24 * time.Hour)
	broken := difftest.Healthy(clock.Now())
	broken.Policy.MX = append(broken.Policy.MX, "mx9.example.com")
	difftest.AddFinding(broken, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3.example.com is not covered")
	difftest.SetGrade(broken, "D")
	s2 := saveScan(t, st, d.ID, broken)
	st.Mute(t.Context(), ann.ID, d.ID, clock.Now().Add(24*time.Hour))
	sh, err := st.CreateShare(t.Context(), ann.ID, s2.ID, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	ctx := b.tab(true)
	b.do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "session", Value: "ann", URL: h.srv.URL})
		return err
	}))
	page := fmt.Sprintf("%s/domains/%d", h.srv.URL, d.ID)
	for _, p := range []struct{ name, url, want string }{
		{"dashboard", h.srv.URL + "/domains", "table.domains"},
		{"domain", page + "?done=muted", "table.timeline"},
		{"saved-scan", fmt.Sprintf("%s/scans/%d", page, s2.ID), ".grade"},
		{"diff", fmt.Sprintf("%s/diff?from=%d&to=%d", page, s1.ID, s2.ID), "h1"},
		{"unsubscribe", h.srv.URL + "/unsubscribe/" + ch.UnsubscribeID, "form button"},
		{"saved-scan-shared", fmt.Sprintf("%s/scans/%d?done=shared", page, s2.ID), "table.shares"},
		{"shares", h.srv.URL + "/shares?done=revoked", "table.shares"},
		{"shared", h.srv.URL + "/s/" + sh.ID, ".grade"},
		{"shared-gone", h.srv.URL + "/s/" + strings.Repeat("a", 26), "h1"},
	} {
		b.do(ctx, chromedp.Navigate(p.url), chromedp.WaitVisible(chromedp.CSS(p.want)))
		b.shot(ctx, "monitoring-"+p.name)
		b.checkA11y(ctx, "monitoring page "+p.name)
	}
}

// okDeliverer accepts every delivery.
type okDeliverer struct{}

func (okDeliverer) Deliver(context.Context, store.Channel, store.Message) (string, error) {
	return "HTTP 204", nil
}

// TestChannelsAPI: alert channels through the API — webhook targets
// checked (https, port 443, public), the secret shown once, e-mail only to
// the account's own verified address, digest and on/off, send test and its
// delivery in the log, another account's channel invisible.
func TestChannelsAPI(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), sqlstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ann, _ := st.CreateUser(t.Context(), "ann@example.test", "x")
	bob, _ := st.CreateUser(t.Context(), "bob@example.test", "x")
	all := []store.Scope{store.ScopeRead, store.ScopeScan, store.ScopeManage}
	users := tokenUsers{"ann": {ann.ID, all}, "ann-read": {ann.ID, []store.Scope{store.ScopeRead}}, "bob": {bob.ID, all}}
	h := newHarness(t, harnessOptions{monitor: &Monitoring{Store: st, Users: users, Now: clock.Now, BaseURL: "https://checker.example.test"}})
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	post := func(tok, body string) response {
		return h.do("POST", "/api/v1/channels", "application/json", body, auth(tok)...)
	}

	for _, bad := range []string{`{"kind":"webhook","url":"http://hooks.example.com/x"}`, `{"kind":"webhook","url":"https://10.0.0.1/x"}`,
		`{"kind":"webhook","url":"https://hooks.example.com:8443/x"}`, `{"kind":"pager"}`, `{"kind":"email","address":"boss@example.test"}`,
		`{"kind":"email"}`} {
		if r := post("ann", bad); r.StatusCode != 422 {
			t.Errorf("%s: %d %s", bad, r.StatusCode, r.body)
		}
	}
	if r := post("ann-read", `{"kind":"webhook","url":"https://hooks.example.com/x"}`); r.StatusCode != 403 {
		t.Errorf("read token: %d", r.StatusCode)
	}
	r := post("ann", `{"kind":"webhook","url":"https://hooks.example.com/mailtls"}`)
	var hook channelResource
	json.Unmarshal(r.body, &hook)
	if r.StatusCode != 201 || !strings.HasPrefix(hook.Secret, "whsec_") || len(hook.Secret) != 6+64 || !hook.Verified {
		t.Fatalf("webhook: %d %s", r.StatusCode, r.body)
	}
	if c, _ := st.GetChannel(t.Context(), store.ChannelID(hook.ID)); string(c.Secret) != hook.Secret {
		t.Error("the secret shown is not the signing key")
	}
	if r := post("ann", `{"kind":"webhook","url":"https://hooks.example.com/mailtls"}`); r.StatusCode != 409 {
		t.Errorf("duplicate: %d", r.StatusCode)
	}
	st.MarkEmailVerified(t.Context(), ann.ID)
	if r := post("ann", `{"kind":"email","address":"Ann@Example.test"}`); r.StatusCode != 201 {
		t.Errorf("own address: %d %s", r.StatusCode, r.body)
	}
	r = h.do("GET", "/api/v1/channels", "", "", auth("ann-read")...)
	if r.StatusCode != 200 || strings.Contains(string(r.body), "whsec_") || strings.Count(string(r.body), `"kind"`) != 2 {
		t.Errorf("list: %s", r.body)
	}

	path := fmt.Sprintf("/api/v1/channels/%d", hook.ID)
	if r := h.do("GET", path+"/deliveries", "", "", auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob's view: %d", r.StatusCode)
	}
	r = h.do("PATCH", path, "application/json", `{"digest_hour":7}`, auth("ann")...)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `"digest":true,"digest_hour":7`) {
		t.Errorf("digest: %d %s", r.StatusCode, r.body)
	}
	if r := h.do("PATCH", path, "application/json", `{"digest_hour":24}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("hour 24: %d", r.StatusCode)
	}
	h.do("PATCH", path, "application/json", `{"disabled":true}`, auth("ann")...)
	if r := h.do("POST", path+"/test", "", "", auth("ann")...); r.StatusCode != 409 {
		t.Errorf("test of a disabled channel: %d", r.StatusCode)
	}
	h.do("PATCH", path, "application/json", `{"disabled":false,"digest":false}`, auth("ann")...)
	if r := h.do("POST", path+"/test", "", "", auth("ann")...); r.StatusCode != 202 {
		t.Fatalf("test: %d %s", r.StatusCode, r.body)
	}
	w, err := monitor.New(monitor.Config{Notifier: true}, monitor.Options{Store: st, Deliver: okDeliverer{}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d: %v", n, err)
	}
	r = h.do("GET", path+"/deliveries", "", "", auth("ann-read")...)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `"kind":"test"`) || !strings.Contains(string(r.body), `"ok":true,"detail":"HTTP 204"`) {
		t.Errorf("delivery log: %s", r.body)
	}
	if r := h.do("DELETE", path, "", "", auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob deleting: %d", r.StatusCode)
	}
	if r := h.do("DELETE", path, "", "", auth("ann")...); r.StatusCode != 204 {
		t.Errorf("delete: %d", r.StatusCode)
	}
}
