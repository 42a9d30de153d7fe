package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/domainverify"
	"github.com/mailtls/mailtls/internal/store"
)

// TestReportsNeedVerifiedDomain: the TLS-RPT reports of a name are private
// (senders' addresses, reporters, raw JSON), so an account that saved the
// name but has not verified it by DNS gets nothing of them on any reports
// URL, not even a count; it gets the record to publish. Its own token,
// published, opens them; another account's token does not; a SERVFAIL
// says "could not check", never "not found".
func TestReportsNeedVerifiedDomain(t *testing.T) {
	f := newReportsFixture(t)
	asCarl := []string{"Cookie", "session=carl"}
	d, err := f.st.AddDomain(t.Context(), store.NewDomain{UserID: f.carl, Name: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("/domains/%d/reports", d.ID)
	urls := []string{base, base + "?days=30", base + ".json", base + ".csv", base + ".csv?table=reporters", base + ".csv?table=reports",
		base + ".csv?table=failures", fmt.Sprintf("%s/%d/raw", base, f.rawID)}
	// What must never reach an unverified account: reporters, addresses,
	// MX hosts, report ids, numbers of the fixture's reports.
	secrets := []string{"google.com", "HYPERLINK", "192.0.2.7", f.failMX, "report(s)", "session(s)", "held", "540"}
	closed := func(when string) {
		t.Helper()
		for _, u := range urls {
			r := f.h.do("GET", u, "", "", asCarl...)
			body := string(r.body)
			if r.StatusCode != 403 {
				t.Errorf("%s: %s: %d, want 403", when, u, r.StatusCode)
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("%s: %s shows %q to an unverified account", when, u, s)
				}
			}
			if !strings.Contains(body, "/domains/"+fmt.Sprint(d.ID)+"/verify") && !strings.Contains(body, "_mailtls-verify.example.com") {
				t.Errorf("%s: %s does not say how to verify:\n%s", when, u, body)
			}
		}
	}
	closed("before any record")
	page := string(f.h.do("GET", base, "", "", asCarl...).body)
	for _, s := range []string{"shown only to an account that has verified the domain", "<code>_mailtls-verify.example.com</code>", "Verify now"} {
		if !strings.Contains(page, s) {
			t.Errorf("the reports page of an unverified account lacks %q:\n%s", s, page)
		}
	}

	// Ann's record is published (the fixture verified her): it is not
	// Carl's token, so Carl stays unverified.
	name, value := verifyRecord(t, f.h, d, asCarl)
	annName, annValue := verifyRecord(t, f.h, f.d, f.asAnn)
	if name != annName || value == annValue || !strings.HasPrefix(value, domainverify.Prefix) {
		t.Fatalf("Carl's record %s %q, Ann's %s %q: want the same name, another token", name, value, annName, annValue)
	}
	r := f.h.do("POST", fmt.Sprintf("/domains/%d/verify", d.ID), "application/x-www-form-urlencoded", "", asCarl...)
	if !strings.Contains(string(r.body), "<strong>Not found.</strong>") {
		t.Errorf("another account's token verified Carl:\n%s", r.body)
	}
	closed("with only Ann's record")

	// A SERVFAIL is "could not check", never "not found"; nothing is stored.
	f.h.lab.DNS.SetRcode(name, dns.TypeTXT, dns.RcodeServerFailure)
	before, _ := f.st.Verification(t.Context(), d.ID)
	r = f.h.do("POST", fmt.Sprintf("/domains/%d/verify", d.ID), "application/x-www-form-urlencoded", "", asCarl...)
	if b := string(r.body); !strings.Contains(b, "<strong>Could not check.</strong>") || strings.Contains(b, "Not found") {
		t.Errorf("SERVFAIL: %s", b)
	}
	if after, _ := f.st.Verification(t.Context(), d.ID); after != before {
		t.Errorf("a failed lookup changed the verification: %+v → %+v", before, after)
	}
	// The API says the same with 503 and Retry-After.
	ar := f.h.do("POST", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer carl-api")
	var av apiVerification
	json.Unmarshal(ar.body, &av)
	if ar.StatusCode != 503 || ar.Header.Get("Retry-After") == "" || av.Check != "unknown" || av.Verified {
		t.Errorf("API SERVFAIL: %d %s", ar.StatusCode, ar.body)
	}
	f.h.lab.DNS.Clear(name, dns.TypeTXT)
	closed("after the SERVFAIL")

	// Carl publishes his own token (beside Ann's) and checks through the API.
	f.h.lab.DNS.MustAdd(t, fmt.Sprintf("%s. 300 IN TXT %q", name, value))
	ar = f.h.do("POST", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer carl-api")
	av = apiVerification{}
	json.Unmarshal(ar.body, &av)
	if ar.StatusCode != 200 || av.Check != "found" || !av.Verified || av.RecordName != name || av.RecordValue != value {
		t.Fatalf("API check with the record: %d %s", ar.StatusCode, ar.body)
	}
	for _, u := range urls {
		r := f.h.do("GET", u, "", "", asCarl...)
		if b := string(r.body); r.StatusCode != 200 || !strings.Contains(b, "google.com") && !strings.Contains(b, ",540,") {
			t.Errorf("verified: %s: %d", u, r.StatusCode)
		}
	}
	gr := f.h.do("GET", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer carl-api")
	if gr.StatusCode != 200 || !strings.Contains(string(gr.body), `"verified":true`) {
		t.Errorf("API state: %d %s", gr.StatusCode, gr.body)
	}
	// Scopes: read shows the record and the state, only manage checks.
	if r := f.h.do("GET", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer carl-read"); r.StatusCode != 200 {
		t.Errorf("GET with a read token: %d", r.StatusCode)
	}
	for _, tok := range []string{"carl-read", "carl-scan"} {
		if r := f.h.do("POST", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer "+tok); r.StatusCode != 403 {
			t.Errorf("POST with %s: %d, want 403", tok, r.StatusCode)
		}
		if r := f.h.do("GET", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer "+tok); tok == "carl-scan" && r.StatusCode != 403 {
			t.Errorf("GET with %s: %d, want 403", tok, r.StatusCode)
		}
	}
	// Another account cannot read or check Carl's verification.
	if r := f.h.do("GET", fmt.Sprintf("/api/v1/domains/%d/verification", d.ID), "", "", "Authorization", "Bearer bob-api"); r.StatusCode != 404 {
		t.Errorf("Bob reads Carl's verification: %d", r.StatusCode)
	}
	if r := f.h.do("POST", fmt.Sprintf("/domains/%d/verify", d.ID), "application/x-www-form-urlencoded", "", f.asBob...); r.StatusCode != 404 {
		t.Errorf("Bob checks Carl's verification: %d", r.StatusCode)
	}
}

// TestVerifyFormNeedsCSRF: the "Verify now" form, like every account
// form, needs the session's CSRF token and a same-origin post; a refused
// post looks nothing up and stores nothing.
func TestVerifyFormNeedsCSRF(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: true})
	h.signUp("ann@example.test")
	a := h.logIn("ann@example.test", testPassword)
	ann, err := h.db.GetUserByEmail(t.Context(), "ann@example.test")
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.db.AddDomain(t.Context(), store.NewDomain{UserID: ann.ID, Name: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	form := fmt.Sprintf("/domains/%d/verify", d.ID)
	if r := a.get(form); r.StatusCode != 200 || !strings.Contains(string(r.body), `name="csrf"`) {
		t.Fatalf("verify page: %d, a form without the CSRF token", r.StatusCode)
	}
	before, _ := h.db.Verification(t.Context(), d.ID)
	if r := a.post(form); r.StatusCode != http.StatusForbidden {
		t.Errorf("without the CSRF token: %d", r.StatusCode)
	}
	if r := a.do("POST", form, map[string][]string{"csrf": {a.csrf()}}, "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", r.StatusCode)
	}
	if after, _ := h.db.Verification(t.Context(), d.ID); after != before {
		t.Errorf("a refused form changed the verification: %+v → %+v", before, after)
	}
	if r := a.post(form, "csrf", a.csrf()); r.StatusCode != 200 || !strings.Contains(string(r.body), "Not found") && !strings.Contains(string(r.body), "Could not check") {
		t.Errorf("with the token: %d\n%s", r.StatusCode, truncate(r.body))
	}
}
