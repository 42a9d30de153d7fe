package lab_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/mailtls/mailtls/internal/lab"
)

// acmeWorld is a lab DNS server publishing host at 127.0.0.1 and a lab CA.
//
// certmagic keeps the challenges it is solving in a process-wide map keyed
// by name, so tests that run at the same time must obtain certificates for
// different names.
func acmeWorld(t *testing.T, host string) (*lab.DNS, *lab.CA) {
	t.Helper()
	d := lab.NewDNS(t)
	d.MustAdd(t, host+". 300 IN A 127.0.0.1")
	return d, lab.MustCA(t, "acme api")
}

// listen opens a TCP listener on 127.0.0.1:0 and returns it with its port.
func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// serve serves h on ln (over TLS if tc is not nil) until the test ends.
func serve(t *testing.T, ln net.Listener, tc *tls.Config, h http.Handler) {
	t.Helper()
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		// certmagic probes the port with a bare TCP connection, a failed
		// handshake.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tc != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// newCertmagic returns a certmagic config with a cache and storage of its
// own, whose only issuer is an ACME issuer for a made from tmpl (CA,
// TrustedRoots, Email, Agreed, Logger and HTTPProxy are set here). Requests
// that certmagic's ACME client would send outside loopback fail the test.
func newCertmagic(t *testing.T, a *lab.ACME, tmpl certmagic.ACMEIssuer) (*certmagic.Config, *certmagic.ACMEIssuer) {
	t.Helper()
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           zap.NewNop(),
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: t.TempDir()},
		Logger:  zap.NewNop(),
		// Pebble's certificates name no OCSP responder, so there is nothing
		// to fetch; disabled anyway so that no certificate can send
		// certmagic to the network.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	})
	var outside atomic.Value // first non-loopback URL
	tmpl.CA = a.DirectoryURL()
	tmpl.TrustedRoots = a.APIRoots()
	tmpl.Email = "admin@example.test"
	tmpl.Agreed = true
	tmpl.Logger = zap.NewNop()
	tmpl.HTTPProxy = func(r *http.Request) (*url.URL, error) {
		if ip := net.ParseIP(r.URL.Hostname()); ip == nil || !ip.IsLoopback() {
			outside.CompareAndSwap(nil, r.URL.String())
			return nil, errors.New("lab test: request outside loopback")
		}
		return nil, nil // no proxy
	}
	iss := certmagic.NewACMEIssuer(cfg, tmpl)
	cfg.Issuers = []certmagic.Issuer{iss}
	t.Cleanup(func() {
		cache.Stop()
		if u := outside.Load(); u != nil {
			t.Errorf("certmagic sent a request outside loopback: %s", u)
		}
	})
	return cfg, iss
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// chainOf returns certmagic's certificate chain for name and its parsed
// leaf.
func chainOf(t *testing.T, ctx context.Context, cfg *certmagic.Config, name string) ([][]byte, *x509.Certificate) {
	t.Helper()
	c, err := cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.Certificate.Certificate, leaf
}

func wantValidations(t *testing.T, a *lab.ACME, want ...lab.ACMEValidation) {
	t.Helper()
	got := a.Validations()
	if len(got) != len(want) {
		t.Fatalf("validations = %+v, want %+v", got, want)
	}
	for i := range want {
		g := got[i]
		if g.Type != want[i].Type || g.Identifier != want[i].Identifier || g.Status != want[i].Status ||
			!strings.Contains(g.Error, want[i].Error) {
			t.Errorf("validation %d = %+v, want %+v", i, g, want[i])
		}
	}
}

// TestACMECertmagic obtains certificates for mta-sts.example.test with
// certmagic, once per challenge type. The subtests share the name, so they
// run one after the other.
func TestACMECertmagic(t *testing.T) {
	t.Parallel()
	const host = "mta-sts.example.test"
	t.Run("http-01", func(t *testing.T) { testACMEHTTP01(t, host) })
	t.Run("tls-alpn-01", func(t *testing.T) { testACMETLSALPN01(t, host) })
}

// testACMEHTTP01 obtains a certificate with certmagic, answering http-01
// on a server of the test's own, as mailtls serve will.
func testACMEHTTP01(t *testing.T, acmeHost string) {
	d, ca := acmeWorld(t, acmeHost)
	ln, port := listen(t)
	a := lab.NewACME(t, d, ca, lab.ACMEOptions{HTTPPort: port, CertLifetime: 2 * time.Hour})
	cfg, iss := newCertmagic(t, a, certmagic.ACMEIssuer{
		DisableTLSALPNChallenge: true,
		// The port is taken by the server below, so certmagic starts no
		// challenge server of its own and relies on the handler.
		ListenHost:  "127.0.0.1",
		AltHTTPPort: port,
	})
	serve(t, ln, nil, iss.HTTPChallengeHandler(http.NotFoundHandler()))

	ctx := testContext(t)
	if err := cfg.ObtainCertSync(ctx, acmeHost); err != nil {
		t.Fatal(err)
	}
	chain, leaf := chainOf(t, ctx, cfg, acmeHost)
	if err := verify(t, chain, a.IssuedRoots(), acmeHost); err != nil {
		t.Errorf("issued chain does not verify against IssuedRoots: %v", err)
	}
	if err := verify(t, chain, ca.Pool(), acmeHost); err == nil {
		t.Error("issued chain verifies against the lab CA")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 2*time.Hour-time.Second || life > 2*time.Hour {
		t.Errorf("lifetime %v, want 2h", life)
	}
	wantValidations(t, a, lab.ACMEValidation{Type: "http-01", Identifier: acmeHost, Status: "valid"})
	if n := a.Orders(); n != 1 {
		t.Errorf("Orders() = %d, want 1", n)
	}
	issued := a.Issued()
	if len(issued) != 1 || !issued[0].Equal(leaf) {
		t.Errorf("Issued() = %d certificates, want the one certmagic holds", len(issued))
	}
}

// testACMETLSALPN01 manages a certificate with certmagic, answering
// tls-alpn-01 on the HTTPS listener that then serves the certificate.
func testACMETLSALPN01(t *testing.T, acmeHost string) {
	d, ca := acmeWorld(t, acmeHost)
	ln, port := listen(t)
	a := lab.NewACME(t, d, ca, lab.ACMEOptions{TLSPort: port})
	cfg, _ := newCertmagic(t, a, certmagic.ACMEIssuer{
		DisableHTTPChallenge: true,
		ListenHost:           "127.0.0.1",
		AltTLSALPNPort:       port,
	})
	tc := cfg.TLSConfig()
	tc.NextProtos = append([]string{"h2", "http/1.1"}, tc.NextProtos...)
	serve(t, ln, tc, lab.Static(http.StatusOK, "text/plain", "version: STSv1\r\n"))

	ctx := testContext(t)
	if err := cfg.ManageSync(ctx, []string{acmeHost}); err != nil {
		t.Fatal(err)
	}
	wantValidations(t, a, lab.ACMEValidation{Type: "tls-alpn-01", Identifier: acmeHost, Status: "valid"})

	// The listener now serves the certificate, which verifies against
	// IssuedRoots.
	resp, body := get(t, clientTo(ln.Addr().String(), a.IssuedRoots()), "https://"+acmeHost+"/.well-known/mta-sts.txt")
	if resp.StatusCode != http.StatusOK || body != "version: STSv1\r\n" {
		t.Errorf("GET = %d %q", resp.StatusCode, body)
	}
	issued := a.Issued()
	if len(issued) != 1 || !issued[0].Equal(resp.TLS.PeerCertificates[0]) {
		t.Error("the served certificate is not the one issued")
	}
}

// TestACMEValidationIsReal checks that a server that does not answer the
// challenge gets no certificate.
func TestACMEValidationIsReal(t *testing.T) {
	t.Parallel()
	const acmeHost = "mta-sts.unanswered.test"
	d, ca := acmeWorld(t, acmeHost)
	ln, port := listen(t)
	a := lab.NewACME(t, d, ca, lab.ACMEOptions{HTTPPort: port})
	cfg, _ := newCertmagic(t, a, certmagic.ACMEIssuer{
		DisableTLSALPNChallenge: true,
		ListenHost:              "127.0.0.1",
		AltHTTPPort:             port,
	})
	serve(t, ln, nil, http.NotFoundHandler()) // no challenge handler

	if err := cfg.ObtainCertSync(testContext(t), acmeHost); err == nil {
		t.Fatal("obtained a certificate without answering the challenge")
	}
	wantValidations(t, a, lab.ACMEValidation{Type: "http-01", Identifier: acmeHost, Status: "invalid", Error: "404"})
	if n := len(a.Issued()); n != 0 {
		t.Errorf("Issued() = %d certificates", n)
	}
}

// TestACMEAuthzReuse renews at once: by default the name is validated
// again; with ReuseAuthz the first validation is reused.
func TestACMEAuthzReuse(t *testing.T) {
	t.Parallel()
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%t", reuse), func(t *testing.T) {
			t.Parallel()
			acmeHost := fmt.Sprintf("mta-sts.reuse-%t.test", reuse)
			d, ca := acmeWorld(t, acmeHost)
			ln, port := listen(t)
			a := lab.NewACME(t, d, ca, lab.ACMEOptions{HTTPPort: port, ReuseAuthz: reuse})
			cfg, iss := newCertmagic(t, a, certmagic.ACMEIssuer{
				DisableTLSALPNChallenge: true,
				ListenHost:              "127.0.0.1",
				AltHTTPPort:             port,
			})
			serve(t, ln, nil, iss.HTTPChallengeHandler(http.NotFoundHandler()))
			ctx := testContext(t)
			if err := cfg.ObtainCertSync(ctx, acmeHost); err != nil {
				t.Fatal(err)
			}
			if err := cfg.RenewCertSync(ctx, acmeHost, true); err != nil {
				t.Fatal(err)
			}
			valid := lab.ACMEValidation{Type: "http-01", Identifier: acmeHost, Status: "valid"}
			if reuse {
				wantValidations(t, a, valid)
			} else {
				wantValidations(t, a, valid, valid)
			}
			if n := a.Orders(); n != 2 {
				t.Errorf("Orders() = %d, want 2", n)
			}
			if n := len(a.Issued()); n != 2 {
				t.Errorf("Issued() = %d certificates, want 2", n)
			}
		})
	}
}

func TestACMEAPI(t *testing.T) {
	t.Parallel()
	d, ca := acmeWorld(t, "mta-sts.api.test")
	a := lab.NewACME(t, d, ca, lab.ACMEOptions{})
	if !strings.HasPrefix(a.DirectoryURL(), "https://127.0.0.1:") || !strings.HasSuffix(a.DirectoryURL(), "/dir") {
		t.Errorf("DirectoryURL() = %q", a.DirectoryURL())
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: a.APIRoots()},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(a.DirectoryURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil || dir["newOrder"] == nil {
		t.Errorf("directory: %v %v", dir, err)
	}

	block, rest := pem.Decode(a.IssuedRootPEM())
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("IssuedRootPEM() = %q", a.IssuedRootPEM())
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Verify(x509.VerifyOptions{Roots: a.IssuedRoots()}); err != nil {
		t.Errorf("the PEM root is not in IssuedRoots: %v", err)
	}
	if a.Orders() != 0 || len(a.Validations()) != 0 || len(a.Issued()) != 0 {
		t.Error("counters not zero")
	}

	if !bytes.Equal(a.APIRootPEM(), ca.RootPEM()) {
		t.Error("APIRootPEM() is not the lab CA's root")
	}
	if path, err := a.WriteAPIRootPEM(t.TempDir()); err != nil {
		t.Error(err)
	} else if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, ca.RootPEM()) {
		t.Errorf("WriteAPIRootPEM wrote %q, %v", b, err)
	}

	var logged lockedBuffer
	lab.NewACME(t, d, ca, lab.ACMEOptions{Log: &logged}).Close()
	if !strings.Contains(logged.String(), d.Addr()) {
		t.Errorf("Pebble's log does not name the lab DNS server %s:\n%s", d.Addr(), logged.String())
	}

	if _, err := lab.StartACME(nil, ca, lab.ACMEOptions{}); err == nil {
		t.Error("StartACME without DNS succeeded")
	}
	if _, err := lab.StartACME(d, ca, lab.ACMEOptions{HTTPPort: 70000}); err == nil {
		t.Error("StartACME with port 70000 succeeded")
	}
}

// pebbleEnv are the variables StartACME sets while it creates Pebble.
var pebbleEnv = []string{"PEBBLE_VA_NOSLEEP", "PEBBLE_VA_ALWAYS_VALID", "PEBBLE_WFE_NONCEREJECT", "PEBBLE_AUTHZREUSE"}

// TestACMECloseLeavesNoGoroutines is not parallel: it looks at every
// goroutine of the process, and at the environment.
func TestACMECloseLeavesNoGoroutines(t *testing.T) {
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1") // must neither leak into Pebble nor be lost
	const acmeHost = "mta-sts.close.test"
	d, ca := acmeWorld(t, acmeHost)
	ln, port := listen(t)
	a, err := lab.StartACME(d, ca, lab.ACMEOptions{HTTPPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if v := strings.Join(envOf(pebbleEnv), ","); v != ",1,," {
		t.Errorf("environment after StartACME: %q", v)
	}
	cfg, iss := newCertmagic(t, a, certmagic.ACMEIssuer{
		DisableTLSALPNChallenge: true,
		ListenHost:              "127.0.0.1",
		AltHTTPPort:             port,
	})
	var answer atomic.Bool
	serve(t, ln, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answer.Load() {
			iss.HTTPChallengeHandler(http.NotFoundHandler()).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	ctx := testContext(t)
	// A failed validation (which PEBBLE_VA_ALWAYS_VALID would have
	// passed), then a successful one.
	if err := cfg.ObtainCertSync(ctx, acmeHost); err == nil {
		t.Fatal("obtained a certificate without answering the challenge")
	}
	answer.Store(true)
	if err := cfg.ObtainCertSync(ctx, acmeHost); err != nil {
		t.Fatal(err)
	}

	a.Close()
	if dump := pebbleGoroutines(); dump != "" {
		t.Errorf("goroutines left after Close:\n%s", dump)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: a.APIRoots()},
	}}
	if resp, err := c.Get(a.DirectoryURL()); err == nil {
		resp.Body.Close()
		t.Error("the API still answers after Close")
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func envOf(keys []string) []string {
	vs := make([]string, len(keys))
	for i, k := range keys {
		vs[i], _ = os.LookupEnv(k)
	}
	return vs
}

// pebbleGoroutines returns the stacks of goroutines running Pebble or lab
// ACME code.
func pebbleGoroutines() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "letsencrypt/pebble/") || strings.Contains(g, "lab.(*ACME)") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}
