package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/diff/difftest"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
)

var shareLinkRE = regexp.MustCompile(`/s/([a-z2-7]{26})`)

// TestSharePages: a saved scan shared by an explicit link from its page
// (CSRF token and same origin required), the public page read-only with
// nothing of the account and not to be indexed, the owner's list, expiry
// on the store's clock, revocation by the owner only, and the same "not
// found" for a revoked, expired or unknown link.
func TestSharePages(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	h.signUp("bob@example.test")
	a := h.logIn("ann@example.test", testPassword)
	b := h.logIn("bob@example.test", testPassword)
	ann, err := h.db.GetUserByEmail(t.Context(), "ann@example.test")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := h.db.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	doc := difftest.Healthy(h.clock.Now())
	difftest.AddFinding(doc, "mx-not-covered", "error", "mx", "mx3.example.com", "<b>mx3</b> is not covered")
	sc := saveScan(t, h.db, d.ID, doc)
	running, _ := h.db.CreateScan(t.Context(), store.NewScan{DomainID: d.ID, Trigger: store.TriggerManual})
	scanPage := fmt.Sprintf("/domains/%d/scans/%d", d.ID, sc.ID)

	// Nothing is public by default.
	if p := string(a.get(scanPage).body); shareLinkRE.MatchString(p) || !strings.Contains(p, "Make a share link") {
		t.Fatalf("scan page before sharing:\n%s", truncate([]byte(p)))
	}
	// Forms need the session's CSRF token and a same-origin post.
	if r := a.post(scanPage+"/share", "days", "7"); r.StatusCode != http.StatusForbidden {
		t.Errorf("share without a CSRF token: %d", r.StatusCode)
	}
	if r := a.do("POST", scanPage+"/share", map[string][]string{"days": {"7"}, "csrf": {a.csrf()}}, "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site share: %d", r.StatusCode)
	}
	if r := b.post(scanPage+"/share", "csrf", b.csrf(), "days", "7"); r.StatusCode != http.StatusNotFound {
		t.Errorf("bob sharing ann's scan: %d", r.StatusCode)
	}
	for _, bad := range []string{"3", "0", "", "-1"} {
		if r := a.post(scanPage+"/share", "csrf", a.csrf(), "days", bad); r.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("days=%q: %d", bad, r.StatusCode)
		}
	}
	if r := a.post(fmt.Sprintf("/domains/%d/scans/%d/share", d.ID, running.ID), "csrf", a.csrf(), "days", "7"); r.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("sharing an unfinished scan: %d", r.StatusCode)
	}
	if ls, _ := h.db.ListShares(t.Context(), ann.ID); len(ls) != 0 {
		t.Fatalf("refused forms made links: %+v", ls)
	}

	r := a.post(scanPage+"/share", "csrf", a.csrf(), "days", "7")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != scanPage+"?done=shared#shares" {
		t.Fatalf("share: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	p := string(a.get(scanPage + "?done=shared").body)
	m := shareLinkRE.FindStringSubmatch(p)
	if m == nil || !strings.Contains(p, h.srv.URL+"/s/"+m[1]) {
		t.Fatalf("no absolute link on the scan page:\n%s", truncate([]byte(p)))
	}
	week := m[1]

	// The public page: no login, read-only, nothing of the account.
	anon := h.do("GET", "/s/"+week, "", "")
	body := string(anon.body)
	if anon.StatusCode != 200 || !strings.Contains(body, "example.com: a scan of") || !strings.Contains(body, "snapshot of a past scan") ||
		!strings.Contains(body, "The link expires at "+h.clock.Now().Add(7*24*time.Hour).UTC().Format("2006-01-02 15:04:05 UTC")) ||
		!strings.Contains(body, "&lt;b&gt;mx3&lt;/b&gt; is not covered") {
		t.Errorf("shared page: %d\n%s", anon.StatusCode, body)
	}
	if !strings.Contains(body, `<meta name="robots" content="noindex, nofollow">`) || anon.Header.Get("X-Robots-Tag") != "noindex, nofollow" {
		t.Errorf("the shared page may be indexed: %v", anon.Header)
	}
	for _, private := range []string{"ann@example.test", "/domains/", `name="csrf"`, "/shares/", "Revoke", "Rescan", "Mute"} {
		if strings.Contains(body, private) {
			t.Errorf("the shared page shows %q", private)
		}
	}
	if r := h.do("GET", "/s/"+week+"/report.json", "", ""); r.StatusCode != 200 || json.Unmarshal(r.body, new(report.Document)) != nil {
		t.Errorf("shared report: %d", r.StatusCode)
	}

	// The owner's list; another account sees none of it.
	if p := string(a.get("/shares").body); !strings.Contains(p, h.srv.URL+"/s/"+week) || !strings.Contains(p, "example.com") {
		t.Errorf("ann's share list:\n%s", truncate([]byte(p)))
	}
	if p := string(b.get("/shares").body); strings.Contains(p, week) || !strings.Contains(p, "no live share links") {
		t.Errorf("bob's share list:\n%s", truncate([]byte(p)))
	}

	unknown := h.do("GET", "/s/"+strings.Repeat("a", 26), "", "")
	// Revocation: not by another account, not without the token; then
	// gone.
	if r := b.post("/shares/"+week+"/revoke", "csrf", b.csrf()); r.StatusCode != http.StatusNotFound {
		t.Errorf("bob revoking: %d", r.StatusCode)
	}
	if r := a.post("/shares/"+week+"/revoke", "csrf", "wrong"); r.StatusCode != http.StatusForbidden {
		t.Errorf("revoke with a wrong CSRF token: %d", r.StatusCode)
	}
	if r := h.do("GET", "/s/"+week, "", ""); r.StatusCode != 200 {
		t.Fatalf("the link died of refused revocations: %d", r.StatusCode)
	}
	r = a.post("/shares/"+week+"/revoke", "csrf", a.csrf(), "next", scanPage+"#shares")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != scanPage+"?done=revoked#shares" {
		t.Errorf("revoke: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := h.do("GET", "/s/"+week, "", ""); r.StatusCode != 404 || string(r.body) != string(unknown.body) {
		t.Errorf("revoked link: %d", r.StatusCode)
	}
	if r := a.post("/shares/"+week+"/revoke", "csrf", a.csrf()); r.StatusCode != http.StatusNotFound {
		t.Errorf("revoking twice: %d", r.StatusCode)
	}
	// Expiry on the store's clock: a one-day link is there a second before
	// its day ends and gone a second after.
	a.post(scanPage+"/share", "csrf", a.csrf(), "days", "1")
	ls, _ := h.db.ListShares(t.Context(), ann.ID)
	if len(ls) != 1 || ls[0].ID == week {
		t.Fatalf("shares %+v", ls)
	}
	day := ls[0].ID
	h.clock.Add(24*time.Hour - time.Second)
	if r := h.do("GET", "/s/"+day, "", ""); r.StatusCode != 200 {
		t.Errorf("a one-day link before its end: %d", r.StatusCode)
	}
	h.clock.Add(2 * time.Second)
	expired := h.do("GET", "/s/"+day, "", "")
	if expired.StatusCode != 404 || unknown.StatusCode != 404 || string(expired.body) != string(unknown.body) {
		t.Errorf("expired %d, unknown %d: want the same 404", expired.StatusCode, unknown.StatusCode)
	}
	if r := h.do("GET", "/s/"+day+"/report.json", "", ""); r.StatusCode != 404 {
		t.Errorf("expired report: %d", r.StatusCode)
	}

}

// TestSharesAPI: share links through the API with tokens — scopes, the
// lifetimes, another account's scan and link out of reach, the list,
// revocation — every answer checked against openapi.yaml.
func TestSharesAPI(t *testing.T) {
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
	d, _ := st.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	sc := saveScan(t, st, d.ID, difftest.Healthy(clock.Now()))
	path := fmt.Sprintf("/api/v1/domains/%d/scans/%d/shares", d.ID, sc.ID)

	if r := h.do("POST", path, "application/json", `{"days":7}`, auth("ann-read")...); r.StatusCode != 403 {
		t.Errorf("read token sharing: %d", r.StatusCode)
	}
	if r := h.do("POST", path, "application/json", `{"days":7}`, auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob sharing ann's scan: %d", r.StatusCode)
	}
	if r := h.do("POST", path, "application/json", `{"days":2}`, auth("ann")...); r.StatusCode != 422 {
		t.Errorf("two days: %d", r.StatusCode)
	}
	r := h.do("POST", path, "application/json", `{"days":30}`, auth("ann")...)
	var sh shareResource
	json.Unmarshal(r.body, &sh)
	if r.StatusCode != 201 || sh.URL != "https://checker.example.test/s/"+sh.ID || !sh.ExpiresAt.Equal(clock.Now().Add(30*24*time.Hour)) ||
		sh.Domain != "example.com" || sh.ScanID != int64(sc.ID) || r.Header.Get("Location") != "/api/v1/shares/"+sh.ID {
		t.Fatalf("share: %d %s", r.StatusCode, r.body)
	}
	if r := h.do("GET", "/s/"+sh.ID, "", ""); r.StatusCode != 200 {
		t.Errorf("the link: %d", r.StatusCode)
	}
	if r := h.do("GET", "/api/v1/shares", "", "", auth("ann-read")...); r.StatusCode != 200 || !strings.Contains(string(r.body), sh.ID) {
		t.Errorf("list: %d %s", r.StatusCode, r.body)
	}
	if r := h.do("GET", "/api/v1/shares", "", "", auth("bob")...); r.StatusCode != 200 || strings.Contains(string(r.body), sh.ID) {
		t.Errorf("bob's list: %s", r.body)
	}
	if r := h.do("DELETE", "/api/v1/shares/"+sh.ID, "", "", auth("bob")...); r.StatusCode != 404 {
		t.Errorf("bob revoking: %d", r.StatusCode)
	}
	if r := h.do("DELETE", "/api/v1/shares/"+sh.ID, "", "", auth("ann-read")...); r.StatusCode != 403 {
		t.Errorf("read token revoking: %d", r.StatusCode)
	}
	if r := h.do("DELETE", "/api/v1/shares/"+sh.ID, "", "", auth("ann")...); r.StatusCode != 204 {
		t.Errorf("revoke: %d", r.StatusCode)
	}
	if r := h.do("GET", "/s/"+sh.ID, "", ""); r.StatusCode != 404 {
		t.Errorf("revoked link: %d", r.StatusCode)
	}
	if r := h.do("DELETE", "/api/v1/shares/"+sh.ID, "", "", auth("ann")...); r.StatusCode != 404 {
		t.Errorf("revoking twice: %d", r.StatusCode)
	}
}

// TestShareWithholdsReportFindings: the findings monitoring drew from the
// domain's TLS-RPT reports (failing MX hosts, sending addresses, counts,
// reporters) are private to accounts that verified the domain
// (docs/accounts.md, "Verifying a domain"); a share link, opened without
// an account, shows the scan's public findings only, on the page, in its
// counts and in the JSON download, while the owner still sees them all.
func TestShareWithholdsReportFindings(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	ann, err := h.db.GetUserByEmail(t.Context(), "ann@example.test")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := h.db.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	doc := difftest.Healthy(h.clock.Now())
	difftest.AddFinding(doc, "mx-not-covered", "error", "mx", "mx3.example.com", "mx3 is not covered")
	const private = "7 failed sessions from 203.0.113.5 reported by google.com"
	difftest.AddFinding(doc, "reports-blocking-failure", "error", "tls-rpt-reports", "mx3.example.com", private)
	sc := saveScan(t, h.db, d.ID, doc)
	scanPage := fmt.Sprintf("/domains/%d/scans/%d", d.ID, sc.ID)
	if p := string(a.get(scanPage).body); !strings.Contains(p, private) {
		t.Fatalf("the owner's page lacks the report finding:\n%s", truncate([]byte(p)))
	}
	if r := a.post(scanPage+"/share", "csrf", a.csrf(), "days", "7"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("share: %d", r.StatusCode)
	}
	m := shareLinkRE.FindStringSubmatch(string(a.get(scanPage).body))
	if m == nil {
		t.Fatal("no share link")
	}
	page := string(h.do("GET", "/s/"+m[1], "", "").body)
	if strings.Contains(page, private) || strings.Contains(page, "203.0.113.5") {
		t.Errorf("the shared page shows a report finding:\n%s", page)
	}
	if !strings.Contains(page, "mx3 is not covered") || !strings.Contains(page, "1 errors") || !strings.Contains(page, "1 finding from the domain's TLS-RPT reports is not shown") {
		t.Errorf("the shared page: want the public finding, its count and the note:\n%s", page)
	}
	r := h.do("GET", "/s/"+m[1]+"/report.json", "", "")
	var shared report.Document
	if r.StatusCode != 200 || json.Unmarshal(r.body, &shared) != nil {
		t.Fatalf("shared report: %d", r.StatusCode)
	}
	if strings.Contains(string(r.body), "reports-blocking-failure") || len(shared.Findings) != len(doc.Findings)-1 || shared.Evidence == nil {
		t.Errorf("shared report.json: %d findings (want %d), report finding in it: %v", len(shared.Findings), len(doc.Findings)-1, strings.Contains(string(r.body), "reports-blocking-failure"))
	}
	if own := a.get(scanPage + "/report.json"); !strings.Contains(string(own.body), private) {
		t.Errorf("the owner's report.json lacks the report finding")
	}
}
