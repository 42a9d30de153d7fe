package policyhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
)

// certmagic keeps challenges, on-demand waits and renewal backoff in
// process-wide maps keyed by name, so every rig has a zone of its own,
// random, which keeps -count=N runs apart too.

// acmeDomain is one domain of an ACME rig, label.<zone>.
type acmeDomain struct {
	label    string
	onDemand bool
	noDNS    bool // NXDOMAIN for mta-sts.<name>
}

type rigOptions struct {
	challenges    []string // nil: both
	lifetime      time.Duration
	ratio         float64
	checkInterval time.Duration
}

// acmeRig is a policy host with ACME certificates from a lab Pebble: lab
// DNS, the Server on two loopback listeners, Pebble validating against
// them, and an ACME of the test's own.
type acmeRig struct {
	zone    string
	dns     *lab.DNS
	pebble  *lab.ACME
	srv     *Server
	acme    *ACME
	metrics *Metrics
	logs    *lab.LogBuffer
	https   string
	cfg     *config.Host
	ids     *IDStore
}

// domain is label.<zone>; host is its policy host.
func (r *acmeRig) domain(label string) string { return label + "." + r.zone }
func (r *acmeRig) host(label string) string   { return "mta-sts." + r.domain(label) }

func newACMERig(t *testing.T, o rigOptions, domains ...acmeDomain) *acmeRig {
	t.Helper()
	r := &acmeRig{zone: rand.Text()[:10] + ".test", dns: lab.NewDNS(t), logs: &lab.LogBuffer{}}
	r.zone = strings.ToLower(r.zone)
	for _, d := range domains {
		if !d.noDNS {
			r.dns.MustAdd(t, r.host(d.label)+". 300 IN A 127.0.0.1")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	r.https = ln.Addr().String()
	httpsPort, httpPort := ln.Addr().(*net.TCPAddr).Port, pl.Addr().(*net.TCPAddr).Port
	r.pebble = lab.NewACME(t, r.dns, lab.MustCA(t, "acme api"), lab.ACMEOptions{
		HTTPPort: httpPort, TLSPort: httpsPort, CertLifetime: o.lifetime,
	})

	r.cfg = acmeHostConfig(t, r.pebble.DirectoryURL(), o.challenges, r.zone, domains)
	r.ids, err = OpenIDStore(filepath.Join(r.cfg.Storage, "ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	r.metrics = NewMetrics(prometheus.NewRegistry())
	r.acme, err = NewACME(ACMEOptions{
		CA:                 r.pebble.DirectoryURL(),
		Email:              "hostmaster@example.test",
		Challenges:         r.cfg.ACME.Challenges,
		TrustedRoots:       r.pebble.APIRoots(),
		Storage:            r.cfg.Storage,
		HTTPPort:           httpPort,
		TLSPort:            httpsPort,
		ListenHost:         "127.0.0.1",
		RenewalWindowRatio: o.ratio,
		RenewCheckInterval: o.checkInterval,
		Log:                slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:            r.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.acme.Close()
		// Close waits for certmagic to let go of the storage.
		if locks, _ := filepath.Glob(filepath.Join(r.cfg.Storage, "certmagic", "locks", "*")); len(locks) > 0 {
			t.Errorf("lock files left after Close: %v", locks)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("acme log:\n%s", r.logs)
		}
	})

	r.srv = NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), r.cfg.Limits, r.acme, r.metrics)
	r.srv.Swap(r.build(t, r.cfg))
	go r.srv.ServeHTTPS(ln)
	go r.srv.ServePlainHTTP(pl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.srv.Shutdown(ctx)
	})
	return r
}

// acmeHostConfig parses a host configuration with ACME certificates.
func acmeHostConfig(t *testing.T, ca string, challenges []string, zone string, domains []acmeDomain) *config.Host {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "host:\n  storage: %s\n  acme:\n    ca: %s\n", t.TempDir(), ca)
	if challenges != nil {
		fmt.Fprintf(&b, "    challenges: [%s]\n", strings.Join(challenges, ", "))
	}
	b.WriteString("  domains:\n")
	for _, d := range domains {
		name := d.label + "." + zone
		fmt.Fprintf(&b, "    %s:\n      mode: testing\n      mx: [mx.%s]\n      on_demand: %t\n", name, name, d.onDemand)
	}
	c, err := config.Parse("acme.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return c.Host
}

func (r *acmeRig) build(t *testing.T, h *config.Host) *Sites {
	t.Helper()
	sites, _, err := Build(h, r.ids, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	return sites
}

// sites builds the sites of some of the rig's domains.
func (r *acmeRig) sites(t *testing.T, labels ...string) *Sites {
	t.Helper()
	h := *r.cfg
	h.Domains = map[string]config.Domain{}
	for _, l := range labels {
		h.Domains[r.domain(l)] = r.cfg.Domains[r.domain(l)]
	}
	return r.build(t, &h)
}

// handshake connects to the HTTPS listener as a client trusting Pebble's
// roots and returns the verified leaf.
func (r *acmeRig) handshake(host string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", r.https, &tls.Config{ServerName: host, RootCAs: r.pebble.IssuedRoots()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitCert waits until host is served with a certificate that verifies.
func (r *acmeRig) waitCert(t *testing.T, host string) *x509.Certificate {
	t.Helper()
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		leaf, err := r.handshake(host)
		if err == nil {
			return leaf
		}
		last = err
	}
	t.Fatalf("%s: no certificate: %v", host, last)
	return nil
}

// fetchPolicy fetches the policy of label.<zone> over HTTPS, as a sender
// would (RFC 8461 §3.3), trusting Pebble's roots.
func (r *acmeRig) fetchPolicy(t *testing.T, label string) {
	t.Helper()
	host := r.host(label)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", r.https)
		},
		TLSClientConfig: &tls.Config{RootCAs: r.pebble.IssuedRoots()},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + host + fetch.Path)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := r.srv.Sites().Lookup(host).Body
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("%s: %d %q, want 200 %q", host, resp.StatusCode, body, want)
	}
	if leaf := resp.TLS.PeerCertificates[0]; !slices.Equal(leaf.DNSNames, []string{host}) {
		t.Errorf("%s: certificate for %v", host, leaf.DNSNames)
	}
}

func (r *acmeRig) count(event string) int {
	var m dto.Metric
	if err := r.metrics.Certs.WithLabelValues(event).Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetCounter().GetValue())
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestACMEIssuance obtains certificates for three domains after Sync,
// once answering only http-01 and once only tls-alpn-01 (RFC 8555 §8.3,
// RFC 8737), and serves the policies with them (RFC 8461 §3.3).
func TestACMEIssuance(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{ChallengeHTTP01, ChallengeTLSALPN01} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			labels := []string{"one", "two", "three"}
			var domains []acmeDomain
			for _, l := range labels {
				domains = append(domains, acmeDomain{label: l})
			}
			r := newACMERig(t, rigOptions{challenges: []string{ch}}, domains...)
			if n := r.pebble.Orders(); n != 0 {
				t.Fatalf("%d orders before Sync", n)
			}
			r.acme.Sync(t.Context(), r.srv.Sites())
			var want []string
			for _, l := range labels {
				r.waitCert(t, r.host(l))
				r.fetchPolicy(t, l)
				want = append(want, r.host(l))
			}
			var seen []string
			for _, v := range r.pebble.Validations() {
				if v.Type != ch || v.Status != "valid" {
					t.Errorf("validation %+v, want %s valid", v, ch)
				}
				seen = append(seen, v.Identifier)
			}
			slices.Sort(seen)
			slices.Sort(want)
			if !slices.Equal(seen, want) {
				t.Errorf("validated %v, want %v", seen, want)
			}
			waitFor(t, 5*time.Second, "3 obtained events", func() bool { return r.count("obtained") == 3 })
			if n := r.count("failed"); n != 0 {
				t.Errorf("%d failed events", n)
			}
			if !strings.Contains(r.logs.String(), "acme: certificate obtained") {
				t.Error("no log of the certificates obtained")
			}
		})
	}
}

// TestACMERenewal makes certificates due for renewal at once (renewal
// window = whole lifetime) and checks that the served one is replaced.
func TestACMERenewal(t *testing.T) {
	t.Parallel()
	r := newACMERig(t, rigOptions{
		challenges:    []string{ChallengeHTTP01},
		lifetime:      time.Hour,
		ratio:         1,
		checkInterval: 100 * time.Millisecond,
	}, acmeDomain{label: "renew"})
	host := r.host("renew")
	r.acme.Sync(t.Context(), r.srv.Sites())
	first := r.waitCert(t, host)
	var renewed *x509.Certificate
	waitFor(t, 20*time.Second, "a renewed certificate", func() bool {
		leaf, err := r.handshake(host)
		if err == nil && leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = leaf
			return true
		}
		return false
	})
	if !slices.Equal(renewed.DNSNames, []string{host}) {
		t.Errorf("renewed certificate for %v", renewed.DNSNames)
	}
	waitFor(t, 5*time.Second, "a renewed event", func() bool { return r.count("renewed") >= 1 })
	if n := r.count("obtained"); n != 1 {
		t.Errorf("%d obtained events, want 1 (then renewals)", n)
	}
	if !strings.Contains(r.logs.String(), "acme: certificate renewed") {
		t.Error("no log of the renewal")
	}
}

// TestACMEOnDemand: an on_demand domain gets its certificate at the first
// handshake; no other name gets an order (STS-HOST-3), whether unknown,
// served but not yet synced, or configured without on_demand.
func TestACMEOnDemand(t *testing.T) {
	t.Parallel()
	r := newACMERig(t, rigOptions{},
		acmeDomain{label: "first", onDemand: true},
		acmeDomain{label: "later", onDemand: true},
		acmeDomain{label: "managed"},
	)
	// The server serves all three; the ACME side knows only the first.
	r.acme.Sync(t.Context(), r.sites(t, "first"))
	if n := r.pebble.Orders(); n != 0 {
		t.Fatalf("%d orders before any handshake", n)
	}

	r.dns.MustAdd(t, r.host("unknown")+". 300 IN A 127.0.0.1")
	for _, host := range []string{r.host("unknown"), r.host("later"), r.host("managed")} {
		if _, err := r.handshake(host); err == nil {
			t.Errorf("%s: handshake succeeded", host)
		}
		if _, err := r.acme.GetCertificate(t.Context(), &tls.ClientHelloInfo{ServerName: host}); err == nil {
			t.Errorf("%s: GetCertificate succeeded", host)
		}
		if err := r.acme.decide(t.Context(), host); err == nil {
			t.Errorf("%s: the on-demand decision said yes", host)
		}
	}
	if n := r.pebble.Orders(); n != 0 {
		t.Fatalf("%d orders after refused handshakes", n)
	}

	// The first handshakes may end before the CA has validated (each
	// waits only within its deadline); one of the next gets it.
	first := r.host("first")
	leaf := r.waitCert(t, first)
	if !slices.Equal(leaf.DNSNames, []string{first}) {
		t.Errorf("certificate for %v", leaf.DNSNames)
	}
	r.fetchPolicy(t, "first")
	if n := r.pebble.Orders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	for _, v := range r.pebble.Validations() {
		if v.Identifier != first {
			t.Errorf("validated %s", v.Identifier)
		}
	}
	if n := r.count("obtained"); n != 1 {
		t.Errorf("%d obtained events, want 1", n)
	}
	if err := r.acme.decide(t.Context(), first); err != nil {
		t.Errorf("decision for the on_demand host: %v", err)
	}
}

// TestACMEFailureIsolated: a domain whose name does not resolve fails,
// with the reason logged and counted, and the others still get theirs.
func TestACMEFailureIsolated(t *testing.T) {
	t.Parallel()
	r := newACMERig(t, rigOptions{},
		acmeDomain{label: "good1"},
		acmeDomain{label: "nx", noDNS: true},
		acmeDomain{label: "good2"},
	)
	r.acme.Sync(t.Context(), r.srv.Sites())
	r.waitCert(t, r.host("good1"))
	r.waitCert(t, r.host("good2"))
	waitFor(t, 20*time.Second, "a failed event", func() bool { return r.count("failed") >= 1 })
	if n := r.count("obtained"); n != 2 {
		t.Errorf("%d obtained events, want 2", n)
	}
	var failure string
	for line := range strings.SplitSeq(r.logs.String(), "\n") {
		if strings.Contains(line, "could not get a certificate") {
			failure = line
			break
		}
	}
	if !strings.Contains(failure, "level=ERROR") || !strings.Contains(failure, "host="+r.host("nx")) ||
		!strings.Contains(failure, "Could not resolve") {
		t.Errorf("failure log %q, want an error for %s with the reason", failure, r.host("nx"))
	}
	if _, err := r.handshake(r.host("nx")); err == nil {
		t.Error("the failed host has a certificate")
	}
	// certmagic retries with backoff (the first retry is a minute away).
	waitFor(t, 5*time.Second, "the retry to be scheduled", func() bool {
		return strings.Contains(r.logs.String(), "will retry")
	})
}

// TestACMESyncAfterReload: a reload adds a domain (managed at once) and
// removes one (no longer served, dropped from certmagic's cache).
func TestACMESyncAfterReload(t *testing.T) {
	t.Parallel()
	r := newACMERig(t, rigOptions{challenges: []string{ChallengeTLSALPN01}},
		acmeDomain{label: "kept"},
		acmeDomain{label: "dropped"},
		acmeDomain{label: "added"},
	)
	before := r.sites(t, "kept", "dropped")
	r.srv.Swap(before)
	r.acme.Sync(t.Context(), before)
	r.waitCert(t, r.host("kept"))
	r.waitCert(t, r.host("dropped"))

	after := r.sites(t, "kept", "added")
	r.srv.Swap(after)
	r.acme.Sync(t.Context(), after)
	r.waitCert(t, r.host("added"))
	dropped := r.host("dropped")
	if _, err := r.acme.GetCertificate(t.Context(), &tls.ClientHelloInfo{ServerName: dropped}); err == nil {
		t.Error("the dropped host still gets a certificate")
	}
	if n := len(r.acme.cache.AllMatchingCertificates(dropped)); n != 0 {
		t.Errorf("%d certificates of the dropped host still cached", n)
	}
	r.acme.mu.Lock()
	_, running := r.acme.running[dropped]
	r.acme.mu.Unlock()
	if running {
		t.Error("the dropped host is still managed")
	}
	if n := r.pebble.Orders(); n != 3 {
		t.Errorf("%d orders, want 3 (the kept host is not ordered again)", n)
	}
}

func TestNewACMEOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		o    ACMEOptions
		ok   bool
	}{
		{"both ports", ACMEOptions{CA: "https://ca.test/dir", Storage: dir, HTTPPort: 8080, TLSPort: 8443}, true},
		{"no CA", ACMEOptions{Storage: dir, HTTPPort: 8080}, false},
		{"no storage", ACMEOptions{CA: "https://ca.test/dir", HTTPPort: 8080}, false},
		{"unknown challenge", ACMEOptions{CA: "https://ca.test/dir", Storage: dir, HTTPPort: 8080, Challenges: []string{"dns-01"}}, false},
		{"http-01 without a plain listener", ACMEOptions{CA: "https://ca.test/dir", Storage: dir, TLSPort: 8443, Challenges: []string{"http-01"}}, false},
		{"no listener at all", ACMEOptions{CA: "https://ca.test/dir", Storage: dir}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewACME(tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %t", err, tt.ok)
			}
			if a != nil {
				a.Close()
				a.Close()
			}
		})
	}
}

// TestSlogCore checks the zap → slog bridge that carries certmagic's logs.
func TestSlogCore(t *testing.T) {
	t.Parallel()
	var buf lab.LogBuffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})
	zl := newZap(h).Named("maint").With(zap.String("cache", "c1"))
	zl.Info("chatty")
	zl.Error("renewing", zap.Error(fmt.Errorf("boom")), zap.Int("attempt", 2))
	got := buf.String()
	want := "level=DEBUG msg=chatty component=certmagic cache=c1 logger=maint\n" +
		"level=ERROR msg=renewing component=certmagic cache=c1 logger=maint error=boom attempt=2\n"
	if got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	// Info is off when the handler is at Info: certmagic's chatter drops.
	buf2 := &lab.LogBuffer{}
	quiet := newZap(slog.NewTextHandler(buf2, nil))
	quiet.Info("chatty")
	quiet.Warn("kept")
	if s := buf2.String(); strings.Contains(s, "chatty") || !strings.Contains(s, "kept") {
		t.Errorf("at Info: %q", s)
	}
}

// goroutinesIn counts the goroutines whose stack has a frame of fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestOnDemandDoesNotPinConnections: with the CA unreachable (it accepts
// connections and never answers), handshakes for an on-demand name are
// refused within the handshake deadline and counted, all of them share
// one attempt to obtain the certificate, and none is left waiting.
func TestOnDemandDoesNotPinConnections(t *testing.T) {
	t.Parallel()
	stall := lab.NewStall(t)
	zone := strings.ToLower(rand.Text()[:10]) + ".test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := acmeHostConfig(t, "https://"+stall.Addr()+"/dir", []string{ChallengeTLSALPN01}, zone, []acmeDomain{{label: "od", onDemand: true}})
	h.Limits.ReadHeaderTimeout = config.Duration(time.Second) // the handshake deadline
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	logs := &lab.LogBuffer{}
	a, err := NewACME(ACMEOptions{CA: h.ACME.CA, Challenges: h.ACME.Challenges, Storage: h.Storage,
		TLSPort: ln.Addr().(*net.TCPAddr).Port, ListenHost: "127.0.0.1", Log: slog.New(slog.NewTextHandler(logs, nil)), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ids, _ := OpenIDStore("")
	sites, _, err := Build(h, ids, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(slog.New(slog.DiscardHandler), h.Limits, a, m)
	s.Swap(sites)
	a.Sync(t.Context(), sites)
	go s.ServeHTTPS(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	const n = 30
	host := "mta-sts.od." + zone
	start := time.Now()
	errs := make(chan error, n)
	for range n {
		go func() {
			d := &net.Dialer{Timeout: 30 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{ServerName: host, InsecureSkipVerify: true})
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	// Frames of this ACME only (tests run in parallel): the receiver is
	// the first argument in a stack trace.
	obtain, getCert := fmt.Sprintf("policyhost.(*ACME).obtain(%p", a), fmt.Sprintf("policyhost.(*ACME).GetCertificate(%p", a)
	for range n {
		if err := <-errs; err == nil {
			t.Error("a handshake succeeded without a certificate")
		}
	}
	// The CA never answers, so every attempt started is still under way.
	if got := goroutinesIn(obtain); got != 1 {
		t.Errorf("%d attempts to obtain for one name, want 1", got)
	}
	// The bound is 1 s; the slack is for a loaded machine.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the handshakes took %v; each must end within its 1 s deadline", took)
	}
	waitFor(t, 5*time.Second, "no handshake waiting for the certificate", func() bool {
		return goroutinesIn(getCert) == 0
	})
	pending := metric(t, reg, "mailtls_host_handshakes_refused_total", "reason", "on_demand_pending")
	failed := metric(t, reg, "mailtls_host_handshakes_refused_total", "reason", "on_demand_failed")
	if pending+failed != n || pending == 0 {
		t.Errorf("refusals counted: %v pending, %v failed; want %d in all", pending, failed, n)
	}
}
