package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/scanjob"
)

func form(vals ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(vals); i += 2 {
		v.Add(vals[i], vals[i+1])
	}
	return v.Encode()
}

const formType = "application/x-www-form-urlencoded"

// submit posts the home page's form and returns the scan id.
func (h *harness) submit(domain string, smtp bool) string {
	h.t.Helper()
	vals := []string{"form", "1", "domain", domain}
	if smtp {
		vals = append(vals, "smtp", "1")
	}
	r := h.do("POST", "/scan", formType, form(vals...))
	if r.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("POST /scan %s: %d %s", domain, r.StatusCode, r.body)
	}
	loc := r.Header.Get("Location")
	id := strings.TrimPrefix(loc, "/scan/")
	if !scanjob.ValidID(id) {
		h.t.Fatalf("POST /scan redirects to %q", loc)
	}
	return id
}

// page waits for the scan and returns its result page.
func (h *harness) page(id string) string {
	h.t.Helper()
	h.finish(id)
	r := h.do("GET", "/scan/"+id, "", "")
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		h.t.Fatalf("GET /scan/%s: %d %s", id, r.StatusCode, r.Header.Get("Content-Type"))
	}
	return string(r.body)
}

func TestSecurityHeaders(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		h := newHarness(t, harnessOptions{tls: tlsOn})
		for _, path := range []string{"/", "/nope", "/api/v1/scans/aaaaaaaaaaaaaaaaaaaaaaaaaa", "/api/v1/openapi.yaml"} {
			r := h.do("GET", path, "", "")
			csp := r.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: CSP %q lacks %s", path, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("%s: CSP allows inline code: %q", path, csp)
			}
			if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("%s: headers %v", path, r.Header)
			}
			if hsts := r.Header.Get("Strict-Transport-Security"); (hsts != "") != tlsOn {
				t.Errorf("%s (tls %v): HSTS %q", path, tlsOn, hsts)
			}
		}
	}
}

// TestNoInlineCode: the templates carry no inline script, style or event
// handler attribute, which the CSP would block.
func TestNoInlineCode(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	world{t, h.lab}.grade("inline.test", "F")
	pages := []string{string(h.do("GET", "/", "", "").body), h.page(h.submit("inline.test", true))}
	bad := regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|<style|\son[a-z]+=|style=|javascript:`)
	for _, p := range pages {
		if m := bad.FindString(p); m != "" {
			t.Errorf("inline code %q in a page", m)
		}
	}
}

func TestHomeAndForm(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	r := h.do("GET", "/", "", "")
	body := string(r.body)
	for _, want := range []string{`<form class="scan" method="post" action="/scan"`, `<label for="domain">`, "Nothing is stored", `type="checkbox"`, "checked"} {
		if !strings.Contains(body, want) {
			t.Errorf("home page lacks %q", want)
		}
	}
	tests := []struct {
		name, body string
		status     int
		contains   string
	}{
		{"empty", form("form", "1", "domain", ""), 400, "That is not a domain we can scan: empty."},
		{"300 characters", form("form", "1", "domain", strings.Repeat("a", 300)+".test"), 400, "not a valid host name"},
		{"not a domain", form("form", "1", "domain", "<b>not a domain</b>"), 400, "&lt;b&gt;not a domain&lt;/b&gt;"},
		{"IP address", form("form", "1", "domain", "192.0.2.1"), 400, "IP address"},
	}
	for _, tt := range tests {
		r := h.do("POST", "/scan", formType, tt.body)
		if r.StatusCode != tt.status || !strings.Contains(string(r.body), tt.contains) || !strings.Contains(string(r.body), `aria-invalid="true"`) {
			t.Errorf("%s: %d, want %d with %q and aria-invalid:\n%s", tt.name, r.StatusCode, tt.status, tt.contains, truncate(r.body))
		}
	}
	if r := h.do("POST", "/scan", formType, "domain="+strings.Repeat("x", 10000)); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form: %d", r.StatusCode)
	}
	if r := h.do("PUT", "/scan", formType, "domain=a.test"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT /scan: %d", r.StatusCode)
	}
	// A cross-site form post is refused (CSRF).
	r = h.do("POST", "/scan", formType, form("domain", "a.test"), "Sec-Fetch-Site", "cross-site")
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", r.StatusCode)
	}
	r = h.do("POST", "/scan", formType, form("domain", "a.test"), "Origin", "https://evil.example")
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("POST with a foreign Origin: %d, want 403", r.StatusCode)
	}
	if r := h.do("GET", "/scan/aaaaaaaaaaaaaaaaaaaaaaaaaa", "", ""); r.StatusCode != 404 || !strings.Contains(string(r.body), "expired") {
		t.Errorf("unknown scan page: %d", r.StatusCode)
	}
}

// TestResultPage: a scan through the form shows the grade, the findings
// by component with anchors, icon and word, RFC references, copyable
// fixes and the downloads.
func TestResultPage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	w := world{t, h.lab}
	w.grade("f.test", "F")
	id := h.submit("https://F.test/", true)
	body := h.page(id)
	for _, want := range []string{
		`<span class="label">Grade</span> <span class="letter">F</span>`,
		`id="finding-sts-record-missing"`, `<span class="icon" aria-hidden="true">ℹ</span> Info:</span>`,
		"RFC 8461 §3.1", `<pre class="copy"`, `_mta-sts.f.test. 3600 IN TXT &#34;v=STSv1; id=`,
		`href="/scan/` + id + `/report.json" download`, `href="/scan/` + id + `/mta-sts.txt" download`,
		"<summary>DNS answers", "SMTP mx.f.test at 127.0.0.", "This result is deleted at",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("result page lacks %q", want)
		}
	}
	// The JSON download is the API's document.
	r := h.do("GET", "/scan/"+id+"/report.json", "", "")
	if r.Header.Get("Content-Type") != "application/json" || !strings.Contains(r.Header.Get("Content-Disposition"), `attachment; filename="f.test.mailtls.json"`) {
		t.Errorf("JSON download headers: %v", r.Header)
	}
	api := h.do("GET", "/api/v1/scans/"+id, "", "").json(t)
	var a, b any
	json.Unmarshal(r.body, &a)
	b = api["document"]
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if string(aj) != string(bj) {
		t.Error("the JSON download differs from the API's document")
	}
	// The policy file: text/plain, CRLF line endings (RFC 8461 §3.2).
	r = h.do("GET", "/scan/"+id+"/mta-sts.txt", "", "")
	p := string(r.body)
	if r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.HasPrefix(p, "version: STSv1\r\n") || strings.Count(p, "\n") != strings.Count(p, "\r\n") || !strings.HasSuffix(p, "\r\n") {
		t.Errorf("policy download: %q %q", r.Header.Get("Content-Type"), p)
	}
	if !strings.Contains(r.Header.Get("Content-Disposition"), `filename="mta-sts.txt"`) {
		t.Errorf("policy download disposition %q", r.Header.Get("Content-Disposition"))
	}
}

// TestProgressWithoutJavaScript: the progress page refreshes itself (a
// zero-delay refresh inside <noscript>), and the next request waits for
// the next stage instead of polling.
func TestProgressWithoutJavaScript(t *testing.T) {
	h := newHarness(t, harnessOptions{jobs: scanjob.Config{Workers: 1}})
	world{t, h.lab}.grade("slowpage.test", "B")
	h.lab.DNS.SetLatency(150 * time.Millisecond)
	id := h.submit("slowpage.test", false)
	r := h.do("GET", "/scan/"+id, "", "")
	body := string(r.body)
	m := regexp.MustCompile(`<noscript><meta http-equiv="refresh" content="0; url=/scan/` + id + `\?seen=(\d+)"></noscript>`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `aria-live="polite"`) {
		t.Fatalf("progress page without a refresh or live region:\n%s", truncate(r.body))
	}
	seen := m[1]
	start := time.Now()
	r = h.do("GET", "/scan/"+id+"?seen="+seen, "", "")
	body = string(r.body)
	if !strings.Contains(body, "Report for slowpage.test") {
		next := regexp.MustCompile(`seen=(\d+)`).FindStringSubmatch(body)
		if next == nil || next[1] == seen {
			t.Errorf("the waiting request returned after %s without a new stage (seen %s, now %v)", time.Since(start), seen, next)
		}
	}
	h.lab.DNS.SetLatency(0)
	h.finish(id)
	if body := string(h.do("GET", "/scan/"+id+"?seen=999", "", "").body); !strings.Contains(body, "Report for slowpage.test") || strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("a finished scan's page still refreshes")
	}
}

// TestHostileContent: HTML and script planted in everything a remote
// server sends (TXT strings, the policy body and headers, the SMTP
// banner, certificate names) is shown as text.
func TestHostileContent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	l := h.lab
	const x = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&`
	w := world{t, l}
	w.dns("evil.test",
		`_mta-sts.$D. 300 IN TXT "v=STSv1; id=<script>alert(1)</script>"`,
		`_mta-sts.$D. 300 IN TXT "v=STSv1; id=1"`,
		`$D. 300 IN TXT "<img src=x onerror=alert(2)>"`,
		`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:<script>alert(3)</script>@evil.test"`,
		"$D. 300 IN MX 10 mx.$D.")
	cert := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mta-sts.evil.test"}, CommonName: x})
	l.MustPolicyHost(t, "evil.test", lab.PolicyHostOptions{Cert: cert, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		rw.Header().Set("Server", x)
		rw.Write([]byte("version: STSv1\r\nmode: enforce\r\nmx: " + x + "\r\nmax_age: 86400\r\n" + x + "\r\n"))
	})})
	mxCert := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx.evil.test"}, CommonName: x})
	l.MustMX(t, "mx.evil.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Name: x, Cert: mxCert})

	id := h.submit("evil.test", true)
	body := h.page(id)
	for _, raw := range []string{"<script>", "<img"} {
		if i := strings.Index(body, raw); i >= 0 && !strings.HasPrefix(body[i:], "<script src=") {
			t.Errorf("unescaped %q in the result page: …%s…", raw, body[max(0, i-80):min(len(body), i+80)])
		}
	}
	// Each planted string is there, as text.
	for _, where := range []string{"id=&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;", "rua=mailto:&lt;script&gt;alert(3)&lt;/script&gt;"} {
		if !strings.Contains(body, where) {
			t.Errorf("the page does not show %q as text", where)
		}
	}
	if n := strings.Count(body, "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"); n < 3 {
		t.Errorf("the planted banner, header, policy line and certificate names appear %d times as text, want at least 3", n)
	}
	// The event stream carries it as JSON text (escaped < and >).
	for _, e := range h.readEvents(id, "") {
		if strings.Contains(e.data, "<script") {
			t.Errorf("raw markup in an event: %s", e.data)
		}
	}
}

// TestAnonymousExpiry: an hour after the scan nothing of it is left: the
// page, the API and the downloads answer 404 and the store is empty.
func TestAnonymousExpiry(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	world{t, h.lab}.grade("gone.test", "F")
	id := h.submit("gone.test", false)
	h.page(id)
	h.clock.Add(59 * time.Minute)
	if r := h.do("GET", "/scan/"+id, "", ""); r.StatusCode != 200 {
		t.Fatalf("before the hour: %d", r.StatusCode)
	}
	h.clock.Add(time.Minute)
	if err := h.jobs.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs, idx := h.store.Len(); recs+idx != 0 {
		t.Errorf("after expiry the store holds %d records, %d index entries", recs, idx)
	}
	for _, p := range []string{"/scan/" + id, "/scan/" + id + "/report.json", "/scan/" + id + "/mta-sts.txt", "/api/v1/scans/" + id, "/api/v1/scans/" + id + "/events"} {
		if r := h.do("GET", p, "", ""); r.StatusCode != 404 {
			t.Errorf("%s after expiry: %d", p, r.StatusCode)
		}
	}
	// A new request scans again rather than reusing.
	r := h.do("POST", "/api/v1/scans", "application/json", `{"domain": "gone.test", "smtp": false}`)
	if m := r.json(t); m["outcome"] != "started" || m["id"] == id {
		t.Errorf("after expiry: %v", m)
	}
}

func TestStatic(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, name := range []string{"app.js", "style.css"} {
		u, err := assetURL(name)
		if err != nil {
			t.Fatal(err)
		}
		r := h.do("GET", u, "", "")
		if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") || len(r.body) == 0 {
			t.Errorf("%s: %d %v", u, r.StatusCode, r.Header)
		}
		if r := h.do("GET", "/static/"+name, "", ""); r.StatusCode != 404 {
			t.Errorf("unhashed /static/%s: %d", name, r.StatusCode)
		}
	}
	if r := h.do("GET", "/static/../server.go", "", ""); r.StatusCode == 200 {
		t.Errorf("path traversal: %d", r.StatusCode)
	}
}
