package resolver_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/stscache"
)

type env struct {
	t     *testing.T
	l     *lab.Lab
	clk   *lab.Clock
	path  string
	r     *resolver.Resolver
	cache *stscache.Cache
}

func newEnv(t *testing.T, l *lab.Lab) *env { return newEnvOwned(t, t, l) }

// newEnvOwned is newEnv whose resolver lives until owner ends.
func newEnvOwned(t, owner *testing.T, l *lab.Lab) *env {
	e := &env{t: t, l: l, clk: lab.NewClock(time.Now()), path: filepath.Join(owner.TempDir(), "cache.db")}
	e.start()
	owner.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	c, err := stscache.Open(stscache.Options{Path: e.path, Now: e.clk.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cache = c
	d := &dial.Dialer{Net: e.l.Net()}
	e.r = resolver.New(resolver.Options{
		DNS:     &resolve.Client{Servers: []string{e.l.DNS.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 2},
		Fetcher: &fetch.Fetcher{Dialer: d, Roots: e.l.CA.Pool(), ConnectTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second, ResponseTimeout: 6 * time.Second, AcceptEncodings: []string{}},
		Dialer:  d,
		Cache:   c,
		Now:     e.clk.Now,
		Jitter:  func(time.Duration) time.Duration { return 0 },
	})
}

func (e *env) stop() {
	if e.r != nil {
		e.r.Close()
		e.cache.Close()
		e.r = nil
	}
}

// restart stops the resolver and opens the cache file again, as a daemon
// restart does.
func (e *env) restart() {
	e.stop()
	e.start()
}

func (e *env) reply(key string) string {
	e.t.Helper()
	d, _ := e.r.Decide(context.Background(), key, sendpolicy.Zone{RequireSNI: true})
	return d.Reply(sendpolicy.Zone{RequireSNI: true}).String()
}

// counter counts the requests a handler serves.
type counter struct {
	n atomic.Int32
	h atomic.Pointer[http.Handler]
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	(*c.h.Load()).ServeHTTP(w, r)
}

func (c *counter) set(h http.Handler) { c.h.Store(&h) }

// site publishes an MTA-STS domain whose record and policy the test changes.
type site struct {
	e      *env
	domain string
	http   *counter
}

func (e *env) site(domain, id, body string) *site {
	s := &site{e: e, domain: domain, http: &counter{}}
	s.http.set(lab.Static(200, "text/plain", body))
	e.l.MustPolicyHost(e.t, domain, lab.PolicyHostOptions{Handler: s.http})
	e.l.DNS.MustAdd(e.t, domain+". 300 IN MX 10 mx."+domain+".", "mx."+domain+". 300 IN A 192.0.2.25")
	s.record(id)
	return s
}

func (s *site) record(id string) {
	s.e.l.DNS.Remove("_mta-sts."+s.domain, dns.TypeTXT)
	if id != "" {
		s.e.l.DNS.MustAdd(s.e.t, fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s"`, s.domain, id))
	}
}

func policy(mode, domain string, maxAge int) string {
	return fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: mx.%s\r\nmx: *.mail.%s\r\nmax_age: %d\r\n", mode, domain, domain, maxAge)
}

func txtQueries(l *lab.Lab, domain string) int {
	n := 0
	for _, q := range l.DNS.Queries() {
		if q.Type == dns.TypeTXT && q.Name == "_mta-sts."+domain+"." {
			n++
		}
	}
	return n
}

func TestEnforceAndCacheHit(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	s := e.site("a.test", "1", policy("enforce", "a.test", 86400))
	want := "OK secure match=mx.a.test:.mail.a.test servername=hostname"
	if got := e.reply("a.test"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for range 50 {
		if got := e.reply("[A.test]:25"); got != want {
			t.Fatalf("cached: got %q", got)
		}
	}
	if n := s.http.n.Load(); n != 1 {
		t.Errorf("%d policy fetches for 51 lookups within the check interval, want 1", n)
	}
	if n := txtQueries(l, "a.test"); n != 1 {
		t.Errorf("%d TXT queries, want 1", n)
	}
}

// TestCacheRules walks one domain through RFC 8461 §3.3 and §5.1.
func TestCacheRules(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	s := e.site("b.test", "1", policy("enforce", "b.test", 86400))
	secure := "OK secure match=mx.b.test:.mail.b.test servername=hostname"
	if got := e.reply("b.test"); got != secure {
		t.Fatalf("first lookup: %q", got)
	}
	// check waits until the background check of a served policy is done.
	check := func(step string, want string, fetches int32) {
		t.Helper()
		e.clk.Add(resolver.DefaultCheckInterval + time.Second)
		got := e.reply("b.test") // serves the cached state, checks in the background
		waitIdle(t, e, "b.test")
		if got2 := e.reply("b.test"); got2 != want {
			t.Errorf("%s: reply %q (first %q), want %q", step, got2, got, want)
		}
		if n := s.http.n.Load(); n != fetches {
			t.Errorf("%s: %d fetches in all, want %d", step, n, fetches)
		}
	}
	// STS-SND-2: same id, no fetch.
	check("same id", secure, 1)
	// STS-FETCH-15: a new id whose fetch fails keeps the unexpired policy.
	s.http.set(lab.Static(500, "text/plain", "oops"))
	s.record("2")
	check("fetch fails", secure, 2)
	if en := e.cache.Peek("b.test"); en.Outcome != stscache.OutcomeFetchFailed || en.FailedID != "2" {
		t.Errorf("entry after the failure: %+v", en)
	}
	// STS-FETCH-14: the failed id is not fetched again within five minutes.
	e.clk.Add(time.Minute)
	e.reply("b.test")
	waitIdle(t, e, "b.test")
	if n := s.http.n.Load(); n != 2 {
		t.Errorf("the failed id was fetched again after a minute (%d fetches)", n)
	}
	// STS-POL-19: an invalid policy is a failed fetch.
	s.http.set(lab.Static(200, "text/plain", "version: STSv1\r\nmode: strict\r\nmx: mx.b.test\r\nmax_age: 86400\r\n"))
	s.record("3")
	check("invalid policy", secure, 3)
	// STS-SND-4: TXT gone, the unexpired policy still applies.
	s.record("")
	check("TXT gone", secure, 3)
	// STS-TXT-16: TXT SERVFAIL, the unexpired policy still applies.
	l.DNS.SetRcode("_mta-sts.b.test", dns.TypeTXT, dns.RcodeServerFailure)
	check("TXT SERVFAIL", secure, 3)
	l.DNS.Clear("_mta-sts.b.test", dns.TypeTXT)
	// STS-SND-2: a new id with a good policy is fetched and replaces it.
	s.http.set(lab.Static(200, "text/plain", "version: STSv1\r\nmode: enforce\r\nmx: new.b.test\r\nmax_age: 86400\r\n"))
	s.record("4")
	check("new id", "OK secure match=new.b.test servername=hostname", 4)
	// STS-SND-3: mode none replaces the policy at once.
	s.http.set(lab.Static(200, "text/plain", "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"))
	s.record("5")
	check("mode none", "NOTFOUND ", 5)
}

func TestExpiry(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	s := e.site("c.test", "1", policy("enforce", "c.test", 3600))
	if got := e.reply("c.test"); !strings.HasPrefix(got, "OK secure") {
		t.Fatalf("first lookup: %q", got)
	}
	s.record("") // the domain removes its record; the policy stays until max_age
	e.clk.Add(59 * time.Minute)
	if got := e.reply("c.test"); !strings.HasPrefix(got, "OK secure") {
		t.Errorf("before expiry: %q", got)
	}
	waitIdle(t, e, "c.test")
	e.clk.Add(2 * time.Minute) // STS-SND-1: fetched t0, max_age 3600 → expired at t0+3600
	if got := e.reply("c.test"); got != "NOTFOUND " {
		t.Errorf("after expiry: %q", got)
	}
}

func TestRestartKeepsPolicies(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	e.site("d.test", "1", policy("enforce", "d.test", 86400))
	want := "OK secure match=mx.d.test:.mail.d.test servername=hostname"
	if got := e.reply("d.test"); got != want {
		t.Fatalf("first lookup: %q", got)
	}
	waitIdle(t, e, "d.test")
	e.restart()
	// After the restart the network is down: the policy comes from the file.
	l.DNS.SetRcode("_mta-sts.d.test", dns.TypeTXT, dns.RcodeServerFailure)
	if got := e.reply("d.test"); got != want {
		t.Errorf("after a restart with DNS failing: %q, want %q", got, want)
	}
}

func TestCoalescing(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	s := e.site("e.test", "1", policy("enforce", "e.test", 86400))
	s.http.set(lab.Slow(300*time.Millisecond, lab.Static(200, "text/plain", policy("enforce", "e.test", 86400))))
	var wg sync.WaitGroup
	replies := make([]string, 50)
	for i := range replies {
		wg.Go(func() { replies[i] = e.reply("e.test") })
	}
	wg.Wait()
	for i, got := range replies {
		if !strings.HasPrefix(got, "OK secure") {
			t.Errorf("lookup %d: %q", i, got)
		}
	}
	if n := s.http.n.Load(); n != 1 {
		t.Errorf("50 concurrent lookups made %d fetches, want 1", n)
	}
	if n := txtQueries(l, "e.test"); n != 1 {
		t.Errorf("50 concurrent lookups made %d TXT queries, want 1", n)
	}
}

func TestNegativeCaching(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	l.DNS.MustAdd(t, "f.test. 300 IN MX 10 mx.f.test.", "mx.f.test. 300 IN A 192.0.2.25")
	for range 100 {
		if got := e.reply("f.test"); got != "NOTFOUND " {
			t.Fatalf("got %q", got)
		}
	}
	if n := txtQueries(l, "f.test"); n != 1 {
		t.Errorf("100 lookups of a domain without MTA-STS made %d TXT queries, want 1", n)
	}
	e.clk.Add(resolver.DefaultNegativeTTL + time.Second)
	e.reply("f.test")
	if n := txtQueries(l, "f.test"); n != 2 {
		t.Errorf("after the negative TTL: %d TXT queries, want 2", n)
	}
}

func TestProactiveRefresh(t *testing.T) {
	l := lab.New(t)
	e := newEnv(t, l)
	s := e.site("g.test", "1", policy("enforce", "g.test", 86400))
	e.reply("g.test")
	first := e.cache.Peek("g.test").FetchedAt
	if n := e.r.RefreshDue(context.Background()); n != 0 {
		t.Errorf("%d refreshes of a fresh policy", n)
	}
	e.clk.Add(12*time.Hour + time.Second) // half of max_age
	if n := e.r.RefreshDue(context.Background()); n != 1 {
		t.Fatalf("%d refreshes at half of max_age, want 1", n)
	}
	if got := e.cache.Peek("g.test").FetchedAt; got <= first || s.http.n.Load() != 2 {
		t.Errorf("the refresh must refetch (same id) and restart the clock (STS-SND-1): fetched %d → %d, %d fetches", first, got, s.http.n.Load())
	}
	// A failed refresh keeps the policy and does not retry at once.
	s.http.set(lab.Static(503, "text/plain", ""))
	e.clk.Add(12*time.Hour + time.Second)
	e.r.RefreshDue(context.Background())
	if got := e.reply("g.test"); !strings.HasPrefix(got, "OK secure") {
		t.Errorf("after a failed refresh: %q", got)
	}
	if n := e.r.RefreshDue(context.Background()); n != 0 {
		t.Errorf("a failed refresh was retried at once (%d)", n)
	}
}

// waitIdle waits until no discovery of domain runs.
func waitIdle(t *testing.T, e *env, domain string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !e.r.Busy(domain) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("the discovery of %s did not finish", domain)
}
