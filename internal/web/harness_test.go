package web

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	mailer "github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/password"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// labAllow are the lab's fake addresses (127.0.0.10 and up, ::1): a test
// guard lets them through as an internal deployment would let its own
// networks through. 127.0.0.1 to 127.0.0.9 stay blocked.
var labAllow = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.10/31"), netip.MustParsePrefix("127.0.0.12/30"), netip.MustParsePrefix("127.0.0.16/28"),
	netip.MustParsePrefix("127.0.0.32/27"), netip.MustParsePrefix("127.0.0.64/26"), netip.MustParsePrefix("127.0.0.128/25"),
	netip.MustParsePrefix("127.0.1.0/24"), netip.MustParsePrefix("::1/128"),
}

type harnessOptions struct {
	allow []netip.Prefix // nil: labAllow; empty non-nil: nothing
	jobs  scanjob.Config
	tls   bool
	// fetchTimeout is the policy fetch's response timeout (default 3s).
	fetchTimeout time.Duration
	// accounts turns accounts on, with a SQLite store on the harness clock
	// and mail kept in h.mail; registration is its mode (default open).
	accounts     bool
	registration string
	limits       *account.Limits
	lifetime     time.Duration // the sessions' absolute lifetime (default 7 days)
	idle         time.Duration // the sessions' idle timeout (default 12 hours)
	// relay sends the account's mail through mail.Relay to a lab mail sink
	// (h.sink) instead of keeping it in h.mail.
	relay bool
	// monitor serves saved domains when set.
	monitor *Monitoring
}

// harness is a web checker on an httptest server, scanning the lab through
// a guarded dialer, with every /api/v1/ response checked against the
// OpenAPI description.
type harness struct {
	t     *testing.T
	lab   *lab.Lab
	srv   *httptest.Server
	web   *Server
	jobs  *scanjob.Manager
	store *scanjob.MemoryStore
	clock *lab.Clock
	api   routers.Router

	// With accounts: the store, the service and the mail it sent.
	db       *sqlstore.DB
	dbPath   string
	accounts *account.Service
	mail     *mailbox
	// With relay: the lab's SMTP sink and the relay to it.
	sink  *lab.MailSink
	relay *mailer.Relay
	// scanner is the scanner of the checker (the lab behind the guard).
	scanner *scan.Scanner

	mu       sync.Mutex
	requests []string
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	l := lab.New(t)
	allow := o.allow
	if allow == nil {
		allow = labAllow
	}
	d := &dial.Dialer{Guard: dial.NewGuard(allow...), Net: l.Net()}
	sc := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: 1500 * time.Millisecond, Attempts: 2},
		Fetcher:  &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool(), ConnectTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second, ResponseTimeout: cmp.Or(o.fetchTimeout, 3*time.Second)},
		Dialer:   d,
		Prober: &smtpprobe.Prober{Dialer: d, Roots: l.CA.Pool(), EHLO: "checker.example.test",
			ConnectTimeout: 2 * time.Second, BannerTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second},
	}
	clock := lab.NewClock(time.Now())
	cfg := o.jobs
	cfg.Now = clock.Now
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	store := scanjob.NewMemoryStore()
	jobs := scanjob.New(cfg, NewScanFunc(sc, nil), store, nil, nil)
	w := &Server{Jobs: jobs, TLS: o.tls, EHLOName: "checker.example.test", Heartbeat: 200 * time.Millisecond, Monitor: o.monitor}
	if w.Monitor != nil && w.Monitor.Resolver == nil {
		// Domain verification looks its records up in the lab too.
		w.Monitor.Resolver = sc.Resolver
	}
	hs := &harness{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hs.mu.Lock()
		hs.requests = append(hs.requests, r.Method+" "+r.URL.RequestURI())
		hs.mu.Unlock()
		w.Handler().ServeHTTP(rw, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := jobs.Close(ctx); err != nil {
			t.Errorf("closing the jobs: %v", err)
		}
		if n := testutilValue(jobs.Metrics().Panics); n != 0 {
			t.Errorf("%v panics recovered", n)
		}
	})
	if o.accounts {
		hs.dbPath = filepath.Join(t.TempDir(), "store.db")
		db, err := sqlstore.Open(context.Background(), hs.dbPath, sqlstore.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		hs.db, hs.mail = db, &mailbox{}
		var sender mailer.Sender = hs.mail
		if o.relay {
			hs.sink = lab.NewMailSink(t, lab.MailSinkOptions{}, l.CA)
			hs.relay = &mailer.Relay{Addr: hs.sink.Addr(), From: "mailtls <alerts@checker.example.test>", RootCAs: l.CA.Pool(), Now: clock.Now}
			sender = hs.relay
		}
		hs.accounts = account.New(account.Config{Store: db, Mail: sender, BaseURL: srv.URL, Registration: o.registration,
			Hasher: &password.Hasher{Params: password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}},
			Now:    clock.Now, Limits: o.limits})
		w.Accounts, w.Store, w.Now, w.SessionLifetime, w.SessionIdleTimeout = hs.accounts, db, clock.Now, o.lifetime, o.idle
		if w.Monitor == nil {
			// The pages of saved domains, with this server's users.
			w.Monitor = &Monitoring{Store: db, Users: w, Now: clock.Now, Resolver: sc.Resolver}
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := hs.accounts.Close(ctx); err != nil {
				t.Error(err)
			}
			db.Close()
		})
	}
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	hs.t, hs.lab, hs.srv, hs.web, hs.jobs, hs.store, hs.clock, hs.api, hs.scanner = t, l, srv, w, jobs, store, clock, router, sc
	return hs
}

// Requests returns the requests the server got, as "METHOD /path?query".
func (h *harness) Requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...)
}

// response is one HTTP exchange.
type response struct {
	*http.Response
	body []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", r.Request.URL, err, r.body)
	}
	return m
}

// do sends a request without following redirects. API responses are
// validated against openapi.yaml (and the request too, unless bad says it
// is meant to be invalid).
func (h *harness) do(method, path, contentType, body string, hdr ...string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 90 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	r := response{resp, b}
	if strings.HasPrefix(path, "/api/") {
		h.validate(req, body, r)
	}
	return r
}

// validate checks a response against the OpenAPI description: the route
// and method must be described, and so must the status, the headers and
// the body.
func (h *harness) validate(req *http.Request, body string, r response) {
	h.t.Helper()
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(strings.NewReader(body))
	route, params, err := h.api.FindRoute(vreq)
	if err != nil {
		if r.StatusCode == http.StatusNotFound || r.StatusCode == http.StatusMethodNotAllowed {
			// Undescribed paths and methods: the error body must still be
			// the described Error object.
			h.validateError(r)
			return
		}
		h.t.Errorf("%s %s: not in openapi.yaml: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{ExcludeRequestBody: r.StatusCode >= 400, ExcludeRequestQueryParams: r.StatusCode >= 400}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.StatusCode, Header: r.Header,
		Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
		out.Options.ExcludeResponseBody = true
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		h.t.Errorf("%s %s → %d does not match openapi.yaml: %v\n%s", req.Method, req.URL, r.StatusCode, err, truncate(r.body))
	}
}

// validateError checks an error body against the Error schema.
func (h *harness) validateError(r response) {
	h.t.Helper()
	doc, _ := openapi3.NewLoader().LoadFromData(OpenAPI)
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		h.t.Errorf("%s: error body is not JSON: %s", r.Request.URL, r.body)
		return
	}
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		h.t.Errorf("%s: error body does not match the Error schema: %v", r.Request.URL, err)
	}
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// startScan posts a scan to the API and returns its id.
func (h *harness) startScan(domain string, smtp bool) string {
	h.t.Helper()
	r := h.do("POST", "/api/v1/scans", "application/json", fmt.Sprintf(`{"domain": %q, "smtp": %t}`, domain, smtp))
	if r.StatusCode != http.StatusAccepted {
		h.t.Fatalf("POST %s: %d %s", domain, r.StatusCode, r.body)
	}
	return r.json(h.t)["id"].(string)
}

// finish waits for a scan through the API's ?wait and returns the scan.
func (h *harness) finish(id string) map[string]any {
	h.t.Helper()
	for range 5 {
		r := h.do("GET", "/api/v1/scans/"+id+"?wait=30s", "", "")
		if r.StatusCode != 200 {
			h.t.Fatalf("GET %s: %d %s", id, r.StatusCode, r.body)
		}
		m := r.json(h.t)
		if m["state"] == "done" || m["state"] == "failed" {
			return m
		}
	}
	h.t.Fatalf("scan %s did not finish", id)
	return nil
}

// world builds lab domains.
type world struct {
	t *testing.T
	l *lab.Lab
}

func (w world) dns(domain string, lines ...string) {
	w.t.Helper()
	for i, s := range lines {
		lines[i] = strings.ReplaceAll(s, "$D", domain)
	}
	w.l.DNS.MustAdd(w.t, lines...)
}

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.$D\r\nmax_age: 604800\r\n"

// grade sets up a lab domain that gets the named grade (scanned with SMTP,
// except "A", which is the A+ setup scanned without): A+, A, B, C, D, F,
// or "undetermined".
func (w world) grade(domain, grade string) {
	w.t.Helper()
	policy := enforcePolicy
	ctype := "text/plain; charset=utf-8"
	switch grade {
	case "B":
		policy = strings.Replace(policy, "enforce", "testing", 1)
	case "C":
		policy += "mx: *.co.uk\r\n" // a wildcard under a public suffix (STS-POL-20)
	case "D":
		ctype = "text/html" // senders that check the media type skip it (STS-FETCH-10)
	}
	switch grade {
	case "F":
		w.dns(domain, "$D. 300 IN MX 10 mx.$D.")
	case "undetermined":
		w.dns(domain, "$D. 300 IN MX 10 mx.$D.")
		w.l.DNS.SetRcode("_mta-sts."+domain, dns.TypeTXT, dns.RcodeServerFailure)
	default:
		w.dns(domain, `_mta-sts.$D. 300 IN TXT "v=STSv1; id=20261128"`, `_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:tls@$D"`, "$D. 300 IN MX 10 mx.$D.")
		w.l.MustPolicyHost(w.t, domain, lab.PolicyHostOptions{Handler: lab.Static(200, ctype, strings.ReplaceAll(policy, "$D", domain))})
	}
	w.l.MustMX(w.t, "mx."+domain, []netip.Addr{w.l.NextAddr()}, lab.SMTPOptions{})
}

func testutilValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}
