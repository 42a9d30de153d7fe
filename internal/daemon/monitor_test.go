package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/store/storetest"
	"github.com/mailtls/mailtls/internal/webhook"
)

// TestServeMonitoring: `mailtls serve` with the web role and a store runs
// the monitor. A domain saved through the API is scanned at once (its
// baseline); the lab breaks it (the policy changed without a new id);
// "rescan now" scans it and exactly one alert goes out by mail through the
// relay (with the one-click unsubscribe headers) and one signed webhook;
// the repair gives one "resolved" notice on each. /healthz has the
// worker's line.
func TestServeMonitoring(t *testing.T) {
	e := newEnv(t)
	clock := storetest.NewClock(time.Now().UTC())
	const d = "watched.test"
	var mu sync.Mutex
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmax_age: 604800\r\n"
	e.l.DNS.MustAdd(t, d+`. 300 IN MX 10 mx1.`+d+`.`, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=1"`,
		`_smtp._tls.`+d+`. 300 IN TXT "v=TLSRPTv1; rua=mailto:tls@`+d+`"`)
	e.l.MustPolicyHost(t, d, lab.PolicyHostOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	})})
	e.l.MustMX(t, "mx1."+d, []netip.Addr{e.l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})

	// A webhook receiver at a (lab) address, verifying every signature.
	var hooks []string
	var bad []string
	hookAddr := e.l.NextAddr()
	e.l.DNS.MustAdd(t, "hooks.receiver.test. 300 IN A "+hookAddr.String())
	e.l.HTTPS.Host("hooks.receiver.test", e.l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"hooks.receiver.test"}}), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.Verify(secretOf(t, hooks), r.Header.Get(webhook.SignatureHeader), body, clock.Now(), 0); err != nil {
			bad = append(bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		hooks = append(hooks, r.Header.Get(webhook.EventHeader)+" "+string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	if err := e.l.MapAddr(e.l.HTTPS.Addr(), hookAddr, 443); err != nil {
		t.Fatal(err)
	}

	// The account, made in the store before the start.
	dbPath := filepath.Join(e.dir, "mailtls.db")
	token := apiUser(t, dbPath, "ann@example.test")

	sink := lab.NewMailSink(t, lab.MailSinkOptions{}, e.l.CA)
	e.writeWebConfig(fmt.Sprintf(`  public_url: https://check.example.test
store: %q
mail:
  relay: %q
  tls: starttls
  from: "mailtls <alerts@check.example.test>"
`, dbPath, sink.Addr()))
	e.start(Options{WebNet: e.l.Net(), WebRoots: e.l.CA.Pool(), MailRoots: e.l.CA.Pool(), Now: clock.Now})
	base := "http://" + e.addrs["web"][0]
	api := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		return out
	}
	// Saving the first domain gives the verified account its e-mail
	// channel; then a webhook.
	dom := api("POST", "/api/v1/domains", `{"domain":"`+d+`"}`, 201)
	path := fmt.Sprintf("/api/v1/domains/%v", dom["id"])
	ch := api("POST", "/api/v1/channels", `{"kind":"webhook","url":"https://hooks.receiver.test/hook"}`, 201)
	mu.Lock()
	hooks = append(hooks, "secret "+ch["secret"].(string))
	mu.Unlock()

	// waitScans waits until the domain has n finished scans.
	waitScans := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			scans := api("GET", path+"/scans", "", 200)["scans"].([]any)
			if len(scans) >= n && scans[0].(map[string]any)["state"] == "done" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d scans after a minute, want %d: %v\n%s", len(scans), n, scans, e.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitScans(1)
	if got := api("GET", path, "", 200); got["last_scan"].(map[string]any)["grade"] == nil {
		t.Fatalf("baseline scan: %v", got)
	}

	// waitNotices waits for n mails and n+1 webhook lines (the secret is
	// the first).
	waitNotices := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := sink.Wait(ctx, n-1, lab.To("ann@example.test")); err != nil {
			t.Fatalf("mail %d: %v\n%s", n, err, e.logs)
		}
		for ctx.Err() == nil {
			mu.Lock()
			got := len(hooks)
			mu.Unlock()
			if got >= n+1 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("webhook %d never came\n%s", n, e.logs)
	}

	// Broken: the policy edited without a new id; rescan now.
	mu.Lock()
	policy = "version: STSv1\r\nmode: enforce\r\nmx: mx1." + d + "\r\nmx: backup." + d + "\r\nmax_age: 604800\r\n"
	mu.Unlock()
	clock.Advance(10 * time.Minute)
	api("POST", path+"/rescan", "", 202)
	waitScans(2)
	waitNotices(1)
	m := sink.Messages()[0]
	subject := decodeHeader(m.Header.Get("Subject"))
	if !strings.Contains(subject, d+": Policy changed but the id did not") || m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" ||
		!strings.HasPrefix(m.Header.Get("List-Unsubscribe"), "<https://check.example.test/unsubscribe/") || !strings.Contains(m.Body, "history-policy-changed-same-id") {
		t.Errorf("alert mail %q %v\n%s", subject, m.Header, m.Body)
	}
	mu.Lock()
	if !strings.HasPrefix(hooks[1], "alert ") || !strings.Contains(hooks[1], `"history-policy-changed-same-id"`) {
		t.Errorf("webhook: %s", hooks[1])
	}
	mu.Unlock()

	// Repaired with a new id.
	e.l.DNS.Remove("_mta-sts."+d, dns.TypeTXT)
	e.l.DNS.MustAdd(t, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=2"`)
	clock.Advance(10 * time.Minute)
	api("POST", path+"/rescan", "", 202)
	waitScans(3)
	waitNotices(2)
	if s := decodeHeader(sink.Messages()[1].Header.Get("Subject")); !strings.Contains(s, "resolved: Policy changed but the id did not") {
		t.Errorf("resolved mail: %q", s)
	}
	// Nothing more: one mail and one webhook per change.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	if len(sink.Messages()) != 2 || len(hooks) != 3 || len(bad) != 0 {
		t.Errorf("%d mails, %d webhooks, refused %v", len(sink.Messages()), len(hooks)-1, bad)
	}
	mu.Unlock()
	if h := get(t, "http://"+e.addrs["admin"][0]+"/healthz"); !strings.Contains(h, "monitor: 3 scans stored") || !strings.Contains(h, "4 alerts delivered") {
		t.Errorf("healthz:\n%s", h)
	}
	if err := e.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// secretOf returns the webhook secret the test recorded first.
func secretOf(t *testing.T, hooks []string) []byte {
	if len(hooks) == 0 {
		return nil
	}
	return []byte(strings.TrimPrefix(hooks[0], "secret "))
}

func decodeHeader(s string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// TestMonitorRetention: web.retention reaches the monitor's janitor (the
// store's defaults for what is not set), and that janitor leaves TLS-RPT
// reports to reports.retention, which the reports role applies.
func TestMonitorRetention(t *testing.T) {
	c := &config.Web{Retention: config.WebRetention{FullReports: config.Duration(7 * 24 * time.Hour), KeepFullReports: 3}}
	r := monitorConfig(c).Retention.WithDefaults()
	def := store.DefaultRetention()
	if r.FullScans != 7*24*time.Hour || r.KeepFull != 3 || r.Scans != def.Scans || r.Outbox != def.Outbox {
		t.Errorf("retention %+v", r)
	}
	if r.TLSRPTRaw >= 0 || r.TLSRPTReports >= 0 {
		t.Errorf("the monitor's janitor would prune TLS-RPT reports: %+v", r)
	}
}

// TestMonitorWorkerKnobs: web.worker reaches the worker; unset keys stay
// zero for the worker's defaults.
func TestMonitorWorkerKnobs(t *testing.T) {
	c := &config.Web{Worker: config.WebWorker{Scans: 12, Poll: config.Duration(2 * time.Second), Lease: config.Duration(20 * time.Second)}}
	if m := monitorConfig(c); m.Scans != 12 || m.Poll != 2*time.Second || m.LeaseTTL != 20*time.Second {
		t.Errorf("worker config %+v", m)
	}
	if m := monitorConfig(&config.Web{}); m.Scans != 0 || m.Poll != 0 || m.LeaseTTL != 0 {
		t.Errorf("worker config without web.worker %+v", m)
	}
}

// apiUser makes a verified account in the store at dbPath before serve
// starts, and returns an API token with every scope.
func apiUser(t *testing.T, dbPath, email string) string {
	t.Helper()
	open := sqlstore.Open
	if config.IsPostgresURL(dbPath) {
		open = sqlstore.OpenPostgres
	}
	db, err := open(context.Background(), dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.CreateUser(context.Background(), email, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if err == nil {
		err = db.MarkEmailVerified(context.Background(), u.ID)
	}
	if err != nil {
		t.Fatal(err)
	}
	acc := account.New(account.Config{Store: db})
	defer acc.Close(context.Background())
	token, _, err := acc.CreateToken(context.Background(), u.ID, "e2e", []store.Scope{store.ScopeRead, store.ScopeScan, store.ScopeManage})
	if err != nil {
		t.Fatal(err)
	}
	return token
}
