package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// certFiles writes a lab certificate for mta-sts.<d> as PEM files, valid
// both at the tests' fixed time and at the real one (which clients check).
func certFiles(t *testing.T, ca *lab.CA, dir, d string) (string, string) {
	from, to := now, time.Now()
	if to.Before(from) {
		from, to = to, from
	}
	return ca.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts." + d},
		NotBefore: from.Add(-time.Hour), NotAfter: to.Add(90 * 24 * time.Hour)})
}

// env is a running daemon on loopback with static lab certificates.
type env struct {
	t       *testing.T
	l       *lab.Lab
	dir     string
	cfgPath string
	logs    *lab.LogBuffer
	addrs   map[string][]string
	reload  chan struct{}
	cancel  context.CancelFunc
	done    chan error
}

// domainYAML is one domain served with a static certificate.
func (e *env) domainYAML(d, mode string, mx ...string) string {
	cert, key := certFiles(e.t, e.l.CA, e.dir, d)
	return fmt.Sprintf("    %s:\n      mode: %s\n      mx: [%s]\n      cert: %s\n      key: %s\n", d, mode, strings.Join(mx, ", "), cert, key)
}

func (e *env) writeConfig(extra string, domains ...string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`log: {level: debug}
admin: {listen: "127.0.0.1:0"}
host:
  listen_https: ["127.0.0.1:0"]
  listen_http: ["127.0.0.1:0"]
  storage: %s
  acme: {disabled: true}
  resolvers: [%q]
  public_name: mta-sts.host.test
%s  domains:
%s`, filepath.Join(e.dir, "storage"), e.l.DNS.Addr(), extra, strings.Join(domains, ""))
	// Rename into place, as editors and config management do, so the
	// watcher never reads half a file.
	tmp := e.cfgPath + ".new"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

func newEnv(t *testing.T) *env {
	l := lab.New(t)
	dir := t.TempDir()
	return &env{t: t, l: l, dir: dir, cfgPath: filepath.Join(dir, "mailtls.yaml"), logs: &lab.LogBuffer{}, reload: make(chan struct{}, 1)}
}

func (e *env) start(opts Options) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	ready := make(chan map[string][]string, 1)
	opts.ConfigPath, opts.Stderr, opts.Reload = e.cfgPath, e.logs, e.reload
	opts.Ready = func(a map[string][]string) { ready <- a }
	if opts.Getenv == nil {
		// The store's default place is the test's directory, never $HOME.
		opts.Getenv = func(k string) string {
			if k == "STATE_DIRECTORY" {
				return e.dir
			}
			return ""
		}
	}
	if opts.WatchInterval == 0 {
		opts.WatchInterval = 20 * time.Millisecond
	}
	go func() { e.done <- Run(ctx, opts) }()
	select {
	case e.addrs = <-ready:
	case err := <-e.done:
		e.t.Fatalf("serve stopped at start: %v\n%s", err, e.logs)
	case <-time.After(30 * time.Second):
		e.t.Fatalf("serve did not start\n%s", e.logs)
	}
	e.t.Cleanup(func() { e.stop() })
}

func (e *env) stop() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		return err
	case <-time.After(20 * time.Second):
		e.t.Fatal("serve did not stop")
		return nil
	}
}

// client fetches from the daemon's HTTPS listener over one keep-alive
// connection, trusting the lab CA.
func (e *env) client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", e.addrs["host-https"][0])
			},
			TLSClientConfig: &tls.Config{RootCAs: e.l.CA.Pool()},
			MaxConnsPerHost: 1,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

// get returns the status and body; status 0 when the request failed
// (an unknown name fails the TLS handshake).
func (e *env) get(c *http.Client, url string) (int, string) {
	e.t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) policy(c *http.Client, d string) string {
	e.t.Helper()
	code, body := e.get(c, "https://mta-sts."+d+"/.well-known/mta-sts.txt")
	if code != 200 {
		return fmt.Sprint(code)
	}
	return body
}

// admin fetches a path of the admin listener.
func (e *env) admin(path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addrs["admin"][0] + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("admin %s: %d", path, resp.StatusCode)
	}
	return string(b)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const body = "version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %d\r\n"

func TestServeAndReload(t *testing.T) {
	e := newEnv(t)
	a := e.domainYAML("a.test", "testing", "mx1.a.test")
	b := e.domainYAML("b.test", "enforce", "mx1.b.test")
	e.writeConfig("", a, b)
	// Only SIGHUP reloads here; TestReloadOnFileChange covers the watcher.
	e.start(Options{Now: func() time.Time { return now }, WatchInterval: -1})

	c := e.client()
	if got, want := e.policy(c, "a.test"), fmt.Sprintf(body, "testing", "mx1.a.test", 86400); got != want {
		t.Fatalf("a.test policy %q, want %q", got, want)
	}
	if got, want := e.policy(c, "b.test"), fmt.Sprintf(body, "enforce", "mx1.b.test", 604800); got != want {
		t.Fatalf("b.test policy %q, want %q", got, want)
	}
	if h := e.admin("/healthz"); !strings.Contains(h, "ok") || !strings.Contains(h, "2 domains served") {
		t.Errorf("healthz %q", h)
	}
	if m := e.admin("/metrics"); !strings.Contains(m, "mailtls_host_domains 2") || !strings.Contains(m, `mailtls_host_requests_total{result="policy"} 2`) || !strings.Contains(m, "go_goroutines") ||
		!strings.Contains(m, "mailtls_dns_panics_total 0") {
		t.Errorf("metrics lack the host figures:\n%s", m)
	}
	recs, err := Records(context.Background(), mustHost(t, e.cfgPath), nil, nil)
	if err != nil || len(recs) != 2 || recs[0].ID == "" {
		t.Fatalf("records after start: %v %+v", err, recs)
	}
	idA := recs[0].ID

	// A reload (SIGHUP): a.test goes to enforce, b.test leaves, c.test
	// arrives — on the same keep-alive connection.
	cc := e.domainYAML("c.test", "testing", "mx1.c.test")
	aEnforce := strings.Replace(a, "mode: testing", "mode: enforce", 1)
	e.writeConfig("", aEnforce, cc)
	e.reload <- struct{}{}
	eventually(t, "the reload", func() bool { return strings.Contains(e.policy(c, "a.test"), "mode: enforce") })
	if !e.reused(c, "a.test") {
		t.Error("a reload must not drop the open connection")
	}
	if got := e.policy(c, "b.test"); got != "404" {
		t.Errorf("a removed domain answers %s, want 404", got)
	}
	if got := e.policy(c, "c.test"); !strings.Contains(got, "mx: mx1.c.test") {
		t.Errorf("an added domain answers %q", got)
	}
	recs, _ = Records(context.Background(), mustHost(t, e.cfgPath), nil, nil)
	if recs[0].Domain != "a.test" || recs[0].ID == idA || recs[0].ID == "" {
		t.Errorf("a changed policy needs a new id (STS-HOST-4): %q then %q", idA, recs[0].ID)
	}

	// A bad file is rejected with the reason; the old configuration serves.
	os.WriteFile(e.cfgPath, []byte("host:\n  domains:\n    a.test: {mode: strict}\n"), 0o600)
	e.reload <- struct{}{}
	eventually(t, "the rejection", func() bool { return strings.Contains(e.logs.String(), "configuration rejected") })
	if !strings.Contains(e.logs.String(), `mode \"strict\"`) {
		t.Errorf("the rejection must say why:\n%s", e.logs)
	}
	if got := e.policy(c, "c.test"); !strings.Contains(got, "mx1.c.test") {
		t.Errorf("after a rejected reload the old configuration must still serve: %q", got)
	}
	if m := e.admin("/metrics"); !strings.Contains(m, `mailtls_config_reloads_total{result="error"} 1`) || !strings.Contains(m, `mailtls_config_reloads_total{result="ok"} 1`) {
		t.Errorf("reload metrics:\n%s", m)
	}

	// The file fixed, with a setting that needs a restart: reported.
	e.writeConfig("", aEnforce)
	cfg, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, bytes.Replace(cfg, []byte(`listen_https: ["127.0.0.1:0"]`), []byte(`listen_https: ["127.0.0.1:1"]`), 1), 0o600)
	e.reload <- struct{}{}
	eventually(t, "the second good reload", func() bool { return e.policy(c, "c.test") == "404" })
	if !strings.Contains(e.logs.String(), "host.listen_https") {
		t.Errorf("a listener change needs a restart and must say so:\n%s", e.logs)
	}

	// Graceful stop.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", e.addrs["host-https"][0], time.Second); err == nil {
		t.Error("the listener is still open after shutdown")
	}
}

// TestReloadOnFileChange: saving a changed file reloads it; rewriting the
// same bytes does not.
func TestReloadOnFileChange(t *testing.T) {
	e := newEnv(t)
	a := e.domainYAML("a.test", "testing", "mx1.a.test")
	e.writeConfig("", a)
	e.start(Options{})
	c := e.client()
	same, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, same, 0o600)
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(e.logs.String(), "configuration reloaded") {
		t.Error("the same bytes must not trigger a reload")
	}
	e.writeConfig("", strings.Replace(a, "mx1.a.test", "mx9.a.test", 1))
	eventually(t, "the reload", func() bool { return strings.Contains(e.policy(c, "a.test"), "mx: mx9.a.test") })
	// The new policy is served before the reload's log line is written.
	eventually(t, `the log line why="file changed"`, func() bool { return strings.Contains(e.logs.String(), `why="file changed"`) })
}

func mustHost(t *testing.T, path string) *config.Host {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c.Host
}

// reused fetches a policy and reports whether the request went over a
// connection opened before.
func (e *env) reused(c *http.Client, d string) bool {
	e.t.Helper()
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://mta-sts."+d+"/.well-known/mta-sts.txt", nil)
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return reused
}

// TestFollowMX: the policy follows the MX set; a DNS failure keeps the last
// known set ("temporary is not absent"), and a restart while DNS fails
// still serves it.
func TestFollowMX(t *testing.T) {
	e := newEnv(t)
	e.l.DNS.MustAdd(t, "f.test. 300 IN MX 10 mx1.f.test.", "f.test. 300 IN MX 20 tenant.mail.protection.outlook.com.")
	follow := func(d string) string {
		cert, key := certFiles(t, e.l.CA, e.dir, d)
		return fmt.Sprintf("    %s:\n      mode: enforce\n      follow_mx: true\n      cert: %s\n      key: %s\n", d, cert, key)
	}
	f, u := follow("f.test"), follow("u.test")
	e.writeConfig("  follow_mx_interval: 50ms\n", f, u)
	e.l.DNS.SetRcode("u.test", dns.TypeMX, dns.RcodeServerFailure)
	e.start(Options{})
	c := e.client()
	if got := e.policy(c, "f.test"); !strings.Contains(got, "mx: mx1.f.test\r\nmx: *.mail.protection.outlook.com\r\n") {
		t.Fatalf("follow_mx policy %q", got)
	}
	if got := e.policy(c, "u.test"); got != "0" {
		t.Errorf("a follow_mx domain whose MX set was never learnt is not served: %q", got)
	}
	if h := e.admin("/healthz"); !strings.Contains(h, "1 waiting") {
		t.Errorf("healthz %q", h)
	}

	// The MX set changes: the policy follows, with a new id.
	e.l.DNS.Remove("f.test", dns.TypeMX)
	e.l.DNS.MustAdd(t, "f.test. 300 IN MX 10 mx2.f.test.")
	eventually(t, "the new MX set", func() bool { return strings.Contains(e.policy(c, "f.test"), "mx: mx2.f.test\r\n") })

	// DNS fails: the last known set stays.
	e.l.DNS.SetRcode("f.test", dns.TypeMX, dns.RcodeServerFailure)
	eventually(t, "a failed lookup", func() bool {
		return strings.Contains(e.admin("/metrics"), `mailtls_host_follow_mx_lookups_total{result="temporary"}`)
	})
	if got := e.policy(c, "f.test"); !strings.Contains(got, "mx: mx2.f.test\r\n") {
		t.Errorf("a DNS failure must keep the last known policy: %q", got)
	}
	// The unknown domain appears once DNS answers.
	e.l.DNS.Clear("u.test", dns.TypeMX)
	e.l.DNS.MustAdd(t, "u.test. 300 IN MX 10 mx.u.test.")
	eventually(t, "u.test served", func() bool { return strings.Contains(e.policy(c, "u.test"), "mx: mx.u.test") })

	// A restart while DNS fails serves the saved set.
	e.stop()
	e.l.DNS.SetRcode("u.test", dns.TypeMX, dns.RcodeServerFailure)
	e.start(Options{})
	c = e.client()
	if got := e.policy(c, "f.test"); !strings.Contains(got, "mx: mx2.f.test\r\n") {
		t.Errorf("after a restart with DNS down: %q", got)
	}
	if got := e.policy(c, "u.test"); !strings.Contains(got, "mx: mx.u.test") {
		t.Errorf("after a restart with DNS down: %q", got)
	}
}

// TestRecords: serve records prints what to publish and finds stale ids.
func TestRecords(t *testing.T) {
	e := newEnv(t)
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"), e.domainYAML("b.test", "testing", "mx1.b.test"), e.domainYAML("c.test", "testing", "mx1.c.test"), e.domainYAML("d.test", "testing", "mx1.d.test"), e.domainYAML("e.test", "testing", "mx1.e.test"))
	h := mustHost(t, e.cfgPath)
	recs, err := Records(context.Background(), h, nil, nil)
	if err != nil || recs[0].Pending == "" || recs[0].ID != "" {
		t.Fatalf("before the server ran, no id exists: %v %+v", err, recs[0])
	}
	e.start(Options{Now: func() time.Time { return now }})
	res := &resolve.Client{Servers: []string{e.l.DNS.Addr()}}
	id := "20261128120000"
	e.l.DNS.MustAdd(t,
		`_mta-sts.a.test. 300 IN TXT "v=STSv1; id=`+id+`"`, "mta-sts.a.test. 300 IN CNAME mta-sts.host.test.", "mta-sts.host.test. 300 IN A 192.0.2.1",
		`_mta-sts.b.test. 300 IN TXT "v=STSv1; id=2025"`, "mta-sts.b.test. 300 IN A 192.0.2.1",
		"mta-sts.c.test. 300 IN CNAME mta-sts.host.test.",
		// Two records pass the "v=STSv1;" filter, one of them invalid:
		// senders then see no policy (RFC 8461 §3.1, STS-TXT-2).
		`_mta-sts.e.test. 300 IN TXT "v=STSv1; id=`+id+`"`, `_mta-sts.e.test. 300 IN TXT "v=STSv1; id=bad id!"`,
		"mta-sts.e.test. 300 IN CNAME mta-sts.host.test.")
	e.l.DNS.SetRcode("_mta-sts.d.test", dns.TypeTXT, dns.RcodeServerFailure)
	recs, err = Records(context.Background(), h, nil, res)
	if err != nil {
		t.Fatal(err)
	}
	byDomain := map[string]*DomainRecords{}
	for _, r := range recs {
		byDomain[r.Domain] = r
	}
	if r := byDomain["a.test"]; !r.OK() || r.ID != id || r.PublishedID != id || len(r.Records) != 2 || r.Records[1].Value != "mta-sts.host.test." {
		t.Errorf("a.test is published and current: %+v", r)
	}
	if r := byDomain["b.test"]; r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), "publishes id=2025 but the server serves the policy with id="+id) || !strings.Contains(strings.Join(r.Problems, "\n"), "not a CNAME to mta-sts.host.test") {
		t.Errorf("b.test has a stale id and no CNAME: %+v", r.Problems)
	}
	if r := byDomain["c.test"]; !strings.Contains(strings.Join(r.Problems, "\n"), "has no MTA-STS record") {
		t.Errorf("c.test has no TXT record: %+v", r.Problems)
	}
	// serve records judges the published record as check does, with the
	// same finding IDs.
	obs := &scan.Observations{Domain: "e.test", PolicyHost: "mta-sts.e.test"}
	obs.DNS.STS = res.Lookup(context.Background(), "_mta-sts.e.test", dns.TypeTXT)
	var want []finding.ID
	for _, f := range check.Evaluate(obs, now).Findings {
		if f.Component == finding.ComponentRecord {
			want = append(want, f.ID)
		}
	}
	if r := byDomain["e.test"]; r.OK() || r.PublishedID != "" || !slices.Equal(findingIDs(r.Findings), want) || !slices.Equal(want, []finding.ID{finding.STSRecordMultiple}) {
		t.Errorf("e.test has two v=STSv1 records: serve records says OK=%v, findings %v; check says %v", r.OK(), findingIDs(r.Findings), want)
	}
	if r := byDomain["d.test"]; len(r.Unknown) == 0 || strings.Contains(strings.Join(r.Problems, "\n"), "_mta-sts") || !strings.Contains(r.Unknown[0], "retry") {
		t.Errorf("a DNS failure is unknown, not missing: %+v", r)
	}
	if mtasts.NewID(now) != id {
		t.Fatal("the test's id assumption")
	}
}

func findingIDs(fs []finding.Finding) []finding.ID {
	var ids []finding.ID
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	return ids
}

func TestStartErrors(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"))
	cfg, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, bytes.Replace(cfg, []byte(`listen_https: ["127.0.0.1:0"]`), []byte(`listen_https: ["`+ln.Addr().String()+`"]`), 1), 0o600)
	err = Run(context.Background(), Options{ConfigPath: e.cfgPath, Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "host.listen_https") {
		t.Errorf("a busy port must stop serve with the reason: %v", err)
	}
	os.WriteFile(e.cfgPath, []byte("hots: {}\n"), 0o600)
	if err := Run(context.Background(), Options{ConfigPath: e.cfgPath, Stderr: io.Discard}); err == nil || !strings.Contains(err.Error(), `:1: unknown key "hots"`) {
		t.Errorf("a bad file at start: %v", err)
	}
}

// TestIPv4AndIPv6Listeners: senders fetch over IPv6 when the policy host
// has an AAAA record, so both families are served.
func TestIPv4AndIPv6Listeners(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	e := newEnv(t)
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"))
	cfg, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, bytes.Replace(cfg, []byte(`listen_https: ["127.0.0.1:0"]`), []byte(`listen_https: ["127.0.0.1:0", "[::1]:0"]`), 1), 0o600)
	e.start(Options{})
	if len(e.addrs["host-https"]) != 2 {
		t.Fatalf("listeners %v", e.addrs)
	}
	for _, addr := range e.addrs["host-https"] {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: e.l.CA.Pool()},
		}}
		if got := e.policy(c, "a.test"); !strings.Contains(got, "mx: mx1.a.test") {
			t.Errorf("%s: %q", addr, got)
		}
	}
}

// TestHostDomains: the configuration becomes what policyhost serves. A
// follow_mx domain waits for its MX set; a certificate file is read with a
// cap (a device or a huge file never fills the memory), and every file
// that cannot be read is reported at once.
func TestHostDomains(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	cert, key := certFiles(t, l.CA, dir, "a.test")
	h := &config.Host{CacheControl: "max-age=60", Domains: map[string]config.Domain{
		"a.test": {Mode: "enforce", MX: []string{"mx1.a.test"}, Cert: cert, Key: key},
		"f.test": {Mode: "testing", FollowMX: true},
		"u.test": {Mode: "testing", FollowMX: true},
	}}
	learnt := func(d string) ([]string, bool) {
		if d == "f.test" {
			return []string{"mx1.f.test", "*.mail.protection.outlook.com"}, true
		}
		return nil, false
	}
	domains, skipped, err := hostDomains(h, learnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(domains) != 2 || domains[0].Name != "a.test" || domains[1].Name != "f.test" {
		t.Fatalf("domains %+v", domains)
	}
	if a := domains[0]; a.Policy.MaxAge != mtasts.EnforceMaxAge || a.CertFile != cert || len(a.CertPEM) == 0 || len(a.KeyPEM) == 0 {
		t.Errorf("a.test: %+v", a)
	}
	if f := domains[1]; strings.Join(f.Policy.MX, " ") != "mx1.f.test *.mail.protection.outlook.com" || f.Policy.MaxAge != mtasts.TestingMaxAge || f.CertPEM != nil {
		t.Errorf("f.test: %+v", f.Policy)
	}
	if _, ok := skipped["u.test"]; !ok || len(skipped) != 1 {
		t.Errorf("a follow_mx domain without a known MX set is not served yet: %v", skipped)
	}

	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, policyhost.MaxCertFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	h.Domains = map[string]config.Domain{
		"big.test": {Mode: "none", Cert: big, Key: key},
		"dev.test": {Mode: "none", Cert: "/dev/zero", Key: key},
	}
	_, _, err = hostDomains(h, learnt)
	for _, want := range []string{"big.test: certificate " + big + ": ", "larger than", "dev.test: certificate /dev/zero: ", "not a regular file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	var ce *policyhost.CertError
	if !errors.As(err, &ce) {
		t.Errorf("error %v is not a *policyhost.CertError", err)
	}
}
