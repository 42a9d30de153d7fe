package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestWebLimitsAcrossInstances: two `serve` instances with the web role on
// one PostgreSQL store, and one client whose requests the load balancer
// spreads over both. concurrent_per_client and scans_per_minute (with its
// burst) hold for the client across the two, not per instance, with the
// same 429 answers as on one instance (docs/scaling.md, "Limits per
// client").
func TestWebLimitsAcrossInstances(t *testing.T) {
	dbURL := lab.NewPostgresDB(t)
	a, b := newEnv(t), newEnv(t)
	b.l = a.l // one lab: whichever instance runs a scan finds the domains
	// Scans of g*.test run until the test opens the gate (their policy
	// host waits for it).
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	a.l.MustMX(t, "mx.g.test", []netip.Addr{a.l.NextAddr()}, lab.SMTPOptions{})
	for i := 1; i <= 4; i++ {
		d := fmt.Sprintf("g%d.test", i)
		a.l.DNS.MustAdd(t, fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=1"`, d), d+". 300 IN MX 10 mx.g.test.")
		a.l.MustPolicyHost(t, d, lab.PolicyHostOptions{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			rw.Write([]byte("version: STSv1\r\nmode: testing\r\nmx: mx.g.test\r\nmax_age: 86400\r\n"))
		})})
	}
	for _, e := range []*env{a, b} {
		e.writeWebConfig("  limits: {scans_per_minute: 1, scan_burst: 3, concurrent_per_client: 2}\nstore: " + dbURL + "\n")
		e.start(Options{WebNet: a.l.Net(), WebRoots: a.l.CA.Pool()})
	}
	base := map[*env]string{a: "http://" + a.addrs["web"][0], b: "http://" + b.addrs["web"][0]}
	type answer struct {
		status     int
		retryAfter string
		id         string
		message    string
	}
	submit := func(e *env, domain string) answer {
		t.Helper()
		resp, err := http.Post(base[e]+"/api/v1/scans", "application/json", strings.NewReader(`{"domain": "`+domain+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var v struct {
			ID    string
			Error struct{ Message string }
		}
		json.Unmarshal(body, &v)
		return answer{resp.StatusCode, resp.Header.Get("Retry-After"), v.ID, v.Error.Message}
	}
	wait := func(e *env, id string) {
		t.Helper()
		resp, err := http.Get(base[e] + "/api/v1/scans/" + id + "?wait=40s")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ State string }
		json.NewDecoder(resp.Body).Decode(&v)
		if v.State != "done" {
			t.Fatalf("scan %s: %s, want done", id, v.State)
		}
	}

	// Two scans running, one on each instance: the client's two places.
	g1, g2 := submit(a, "g1.test"), submit(b, "g2.test")
	if g1.status != 202 || g2.status != 202 {
		t.Fatalf("first two scans: %+v %+v", g1, g2)
	}
	// A third is refused by either instance, though each runs only one.
	for _, e := range []*env{a, b} {
		if got := submit(e, "g3.test"); got.status != 429 || got.retryAfter != "10" ||
			got.message != "too many of your scans are still running; wait for one to finish" {
			t.Fatalf("a third running scan: %+v; want 429, Retry-After 10, wait for one to finish", got)
		}
	}
	// Joining a running scan is free, whichever instance runs it.
	if got := submit(a, "g2.test"); got.status != 202 || got.id != g2.id {
		t.Fatalf("joining g2 on A: %+v, want 202 and %s", got, g2.id)
	}
	open()
	wait(a, g1.id)
	wait(a, g2.id)
	// The rate: 1 a minute, at most 3 at once; two were started, the
	// refusals and the join cost nothing.
	if got := submit(b, "g3.test"); got.status != 202 {
		t.Fatalf("the burst's third scan: %+v", got)
	}
	// The next one is due 60s after the first (less the time the scans
	// took): Retry-After says when, in whole seconds rounded up.
	for _, e := range []*env{a, b} {
		got := submit(e, "g4.test")
		var n int
		fmt.Sscanf(got.message, "too many scans from your address; retry in %d seconds", &n)
		if got.status != 429 || n < 1 || n > 60 || got.message != fmt.Sprintf("too many scans from your address; retry in %d seconds", n) ||
			(got.retryAfter != fmt.Sprint(n) && got.retryAfter != fmt.Sprint(n+1)) {
			t.Fatalf("a fourth scan within the minute: %+v; want 429, retry in at most 60 seconds", got)
		}
	}
	// Each instance counted its own refusals.
	for _, e := range []*env{a, b} {
		m := e.admin("/metrics")
		for _, want := range []string{`mailtls_web_scan_requests_total{result="refused_concurrent"} 1`, `mailtls_web_scan_requests_total{result="refused_rate"} 1`} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}
}
