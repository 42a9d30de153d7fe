package policyhost

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// writeCert writes a lab certificate for names as PEM files.
func writeCert(t *testing.T, ca *lab.CA, names ...string) (certFile, keyFile string) {
	return ca.MustWriteLeaf(t, t.TempDir(), lab.LeafOptions{DNSNames: names})
}

// testHost is what the daemon hands policyhost for a host configuration.
type testHost struct {
	Storage      string
	Limits       Limits
	CacheControl string
	Domains      []Domain
}

// defaultLimits are the limits of the default configuration (config's
// defaults for the host section).
var defaultLimits = Limits{MaxConns: 10000, MaxConnsPerIP: 64, RequestsPerSecond: 50, Burst: 100,
	ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
	MaxHeaderBytes: 8 << 10}

// staticDomain serves d in enforce mode with a static lab certificate.
func staticDomain(t *testing.T, ca *lab.CA, d string) Domain {
	t.Helper()
	certFile, keyFile := writeCert(t, ca, "mta-sts."+d)
	return Domain{Name: d, Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeEnforce, MaxAge: mtasts.EnforceMaxAge, MX: []string{"mx1." + d, "*.mail." + d}},
		CertFile: certFile, CertPEM: mustRead(t, certFile), KeyPEM: mustRead(t, keyFile)}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostConfig serves domains with static lab certificates and the default
// limits, changed by limits when not nil.
func hostConfig(t *testing.T, l *lab.Lab, limits func(*Limits), domains ...string) *testHost {
	t.Helper()
	h := &testHost{Storage: t.TempDir(), Limits: defaultLimits, CacheControl: "max-age=60"}
	if limits != nil {
		limits(&h.Limits)
	}
	for _, d := range domains {
		h.Domains = append(h.Domains, staticDomain(t, l.CA, d))
	}
	return h
}

func (h *testHost) build(t *testing.T, ids *IDStore) *Sites {
	t.Helper()
	sites, err := Build(h.Domains, h.CacheControl, ids, now)
	if err != nil {
		t.Fatal(err)
	}
	return sites
}

type running struct {
	srv    *Server
	reg    *prometheus.Registry
	https  string
	plain  string
	dialer *dial.Dialer
	ids    *IDStore
}

// metric is the value of a counter or gauge with one label (or none:
// label ""), 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func start(t *testing.T, l *lab.Lab, h *testHost) *running {
	t.Helper()
	ids, err := OpenIDStore(filepath.Join(h.Storage, "ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	sites := h.build(t, ids)
	reg := prometheus.NewRegistry()
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), h.Limits, nil, NewMetrics(reg))
	s.Swap(sites)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeHTTPS(ln)
	go s.ServePlainHTTP(pl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	r := &running{srv: s, reg: reg, https: ln.Addr().String(), plain: pl.Addr().String(), ids: ids}
	rule, err := dial.ParseRule("::" + r.https)
	if err != nil {
		t.Fatal(err)
	}
	r.dialer = &dial.Dialer{Rules: []dial.Rule{rule}}
	return r
}

func (r *running) client(t *testing.T, l *lab.Lab, sni string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return net.Dial("tcp", r.https)
			},
			TLSClientConfig: &tls.Config{RootCAs: l.CA.Pool(), ServerName: sni},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestServesPolicies(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, nil, "a.test", "b.test"))
	f := &fetch.Fetcher{Dialer: r.dialer, Roots: l.CA.Pool()}
	for _, d := range []string{"a.test", "b.test"} {
		res := f.Fetch(context.Background(), "mta-sts."+d, netip.MustParseAddr("192.0.2.1"))
		if res.Error != "" || res.Status != 200 || !res.TLS.Verdict.OK() {
			t.Fatalf("%s: %+v", d, res)
		}
		want := fmt.Sprintf("version: STSv1\r\nmode: enforce\r\nmx: mx1.%s\r\nmx: *.mail.%s\r\nmax_age: 604800\r\n", d, d)
		if string(res.Body) != want {
			t.Errorf("%s body %q, want %q", d, res.Body, want)
		}
		if res.Header["Content-Type"] != "text/plain; charset=utf-8" || res.Header["Cache-Control"] != "max-age=60" {
			t.Errorf("%s headers %v", d, res.Header)
		}
		if pp := mtasts.ParsePolicy(res.Body); pp.Policy == nil || len(pp.Problems) > 0 {
			t.Errorf("%s: the served policy has problems: %v", d, pp.Problems)
		}
		if v := res.TLS.Version; v != "TLS 1.3" {
			t.Errorf("TLS %s", v)
		}
	}
	if ids := r.srv.Sites().All(); len(ids) != 2 || !mtasts.ValidID(ids[0].ID) {
		t.Errorf("sites %+v", ids)
	}
}

func TestRequestsThatGetNoPolicy(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, nil, "a.test", "b.test"))
	c := r.client(t, l, "mta-sts.a.test")
	tests := []struct {
		name, method, url, host string
		want                    int
	}{
		{"HEAD", "HEAD", "https://mta-sts.a.test/.well-known/mta-sts.txt", "", 200},
		{"other path", "GET", "https://mta-sts.a.test/", "", 404},
		{"old draft path", "GET", "https://mta-sts.a.test/.well-known/mta-sts.json", "", 404},
		{"POST", "POST", "https://mta-sts.a.test/.well-known/mta-sts.txt", "", 405},
		{"unknown host", "GET", "https://mta-sts.a.test/.well-known/mta-sts.txt", "evil.test", 404},
		{"host of another site than the SNI", "GET", "https://mta-sts.a.test/.well-known/mta-sts.txt", "mta-sts.b.test", 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want != 200 && len(body) != 0 {
				t.Errorf("error responses carry no body, got %q", body)
			}
			if tt.method == "HEAD" && (len(body) != 0 || resp.Header.Get("Content-Length") == "0") {
				t.Errorf("HEAD: body %q, Content-Length %q", body, resp.Header.Get("Content-Length"))
			}
		})
	}
}

// TestUnknownSNIFailsTheHandshake: no fallback certificate (STS-HOST-3).
func TestUnknownSNIFailsTheHandshake(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, nil, "a.test"))
	for _, sni := range []string{"mta-sts.other.test", "", "a.test"} {
		conn, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Errorf("SNI %q: handshake succeeded", sni)
		} else if !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("SNI %q: %v, want the unrecognized_name alert (RFC 6066 §3)", sni, err)
		}
	}
	if n := metric(t, r.reg, "mailtls_host_handshakes_refused_total", "reason", "unknown_name"); n != 3 {
		t.Errorf("%v handshakes for unknown names counted, want 3", n)
	}
	if _, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "mta-sts.a.test", RootCAs: l.CA.Pool(), MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Error("TLS 1.1 was accepted; only 1.2 and newer (RFC 8461 §7.2)")
	}
}

func TestPlainHTTPNeverRedirects(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, nil, "a.test"))
	req, _ := http.NewRequest("GET", "http://"+r.plain+"/.well-known/mta-sts.txt", nil)
	req.Host = "mta-sts.a.test"
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Location") != "" {
		t.Errorf("plain HTTP: %d, Location %q; want 404 and no redirect (RFC 8461 §3.3)", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("plain HTTP 404: X-Content-Type-Options %q, want nosniff like every HTTPS answer", got)
	}
}

func TestLimits(t *testing.T) {
	l := lab.New(t)
	// Connection caps: with two slots, two TLS connections complete their
	// handshake and stay open; a third is closed at once, and counted by
	// its limit; once one of the first closes, a new one gets in.
	for _, tt := range []struct {
		name    string
		limits  func(*Limits)
		counted string
	}{
		{"connections per IP", func(l *Limits) { l.MaxConnsPerIP, l.MaxConns = 2, 0 }, "per_ip"},
		{"connections in all", func(l *Limits) { l.MaxConns, l.MaxConnsPerIP = 2, 0 }, "global"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, l, hostConfig(t, l, tt.limits, "a.test"))
			dial := func() (*tls.Conn, error) {
				d := &net.Dialer{Timeout: 5 * time.Second}
				c, err := tls.DialWithDialer(d, "tcp", r.https, &tls.Config{ServerName: "mta-sts.a.test", RootCAs: l.CA.Pool()})
				if err == nil {
					// A read proves the server still holds the connection
					// (TLS 1.3 sends its session tickets after the handshake).
					c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					_, err = c.Read(make([]byte, 1))
					c.SetReadDeadline(time.Time{})
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						return c, nil
					}
					c.Close()
					if err == nil {
						err = fmt.Errorf("the server sent data")
					}
				}
				return nil, err
			}
			var open []*tls.Conn
			for i := 0; i < 2; i++ {
				c, err := dial()
				if err != nil {
					t.Fatalf("connection %d within the limit: %v", i+1, err)
				}
				open = append(open, c)
			}
			defer func() {
				for _, c := range open {
					c.Close()
				}
			}()
			if c, err := dial(); err == nil {
				c.Close()
				t.Fatal("a third connection got in: the limit does not hold")
			}
			if n := metric(t, r.reg, "mailtls_host_connections_rejected_total", "limit", tt.counted); n != 1 {
				t.Errorf("%v rejections counted as %s, want 1", n, tt.counted)
			}
			open[0].Close()
			open = open[1:]
			var err error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var c *tls.Conn
				if c, err = dial(); err == nil {
					open = append(open, c)
					break
				}
			}
			if err != nil {
				t.Errorf("a closed connection must free its slot: %v", err)
			}
		})
	}

	t.Run("requests per IP", func(t *testing.T) {
		r := start(t, l, hostConfig(t, l, func(l *Limits) { l.RequestsPerSecond, l.Burst = 1, 3 }, "a.test"))
		c := r.client(t, l, "mta-sts.a.test")
		codes := map[int]int{}
		for i := 0; i < 8; i++ {
			resp, err := c.Get("https://mta-sts.a.test/.well-known/mta-sts.txt")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes[resp.StatusCode]++
		}
		if codes[429] == 0 || codes[200] == 0 {
			t.Errorf("codes %v: want some 200 within the burst, then 429", codes)
		}
	})

	t.Run("header size", func(t *testing.T) {
		r := start(t, l, hostConfig(t, l, nil, "a.test"))
		conn, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "mta-sts.a.test", RootCAs: l.CA.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, "431") {
			t.Errorf("a 64 KiB header got %q, want 431", line)
		}
	})
}

func TestSwapKeepsServing(t *testing.T) {
	l := lab.New(t)
	h := hostConfig(t, l, nil, "a.test")
	r := start(t, l, h)
	c := r.client(t, l, "mta-sts.a.test")
	resp, err := c.Get("https://mta-sts.a.test/.well-known/mta-sts.txt")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("before: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h2 := hostConfig(t, l, nil, "b.test")
	sites := h2.build(t, r.ids)
	r.srv.Swap(sites)
	// The connection opened before the swap still works, and now sees the new sites.
	resp, err = c.Get("https://mta-sts.a.test/.well-known/mta-sts.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("a removed domain answers %d, want 404", resp.StatusCode)
	}
}

// TestIDStore: STS-HOST-4, the id changes exactly when the body changes,
// and survives restarts.
func TestIDStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "ids.json")
	s, err := OpenIDStore(path)
	if err != nil {
		t.Fatal(err)
	}
	assign := func(s *IDStore, body string, at time.Time) string {
		t.Helper()
		ids, err := s.Assign(map[string][]byte{"a.test": []byte(body)}, at)
		if err != nil {
			t.Fatal(err)
		}
		return ids["a.test"]
	}
	id1 := assign(s, "body 1", now)
	if id1 != "20261128120000" || assign(s, "body 1", now.Add(time.Hour)) != id1 {
		t.Fatalf("the id must stay while the body stays: %q", id1)
	}
	s2, err := OpenIDStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := assign(s2, "body 1", now.Add(48*time.Hour)); got != id1 {
		t.Errorf("the id must survive a restart: %q", got)
	}
	// Same second, new body: still a new id (never the previous one).
	id2 := assign(s2, "body 2", now)
	if id2 == id1 || !mtasts.ValidID(id2) {
		t.Errorf("a changed body needs a new id, got %q after %q", id2, id1)
	}
	// Another process (serve records) sees the id the server assigned.
	if id, hash, ok, err := s.Lookup("a.test"); err != nil || !ok || id != id2 || hash != HashBody([]byte("body 2")) {
		t.Errorf("lookup through a second handle: %q %q %v %v", id, hash, ok, err)
	}
	os.WriteFile(path, []byte("{broken"), 0o600)
	if _, err := OpenIDStore(path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged store must be reported: %v", err)
	}
	if _, err := s.Assign(map[string][]byte{"a.test": []byte("x")}, now); err == nil {
		t.Error("a store damaged while running must fail the update, not reset every id")
	}
}

// TestALPN: senders' HTTP clients offer h2, http/1.1, http/1.0 or nothing;
// every one of them gets the policy (RFC 8461 §3.3 only asks for HTTPS).
// acme-tls/1 alone is an ACME validation (RFC 8737 §3), refused with ACME
// off.
func TestALPN(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, nil, "a.test"))
	get := "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nConnection: close\r\n\r\n"
	tests := []struct {
		name       string
		offer      []string
		negotiated string
		request    string // "" means the handshake must fail
	}{
		{"h2 only", []string{"h2"}, "h2", "h2"},
		{"h2 and http/1.1", []string{"h2", "http/1.1"}, "h2", "h2"},
		{"http/1.1 only", []string{"http/1.1"}, "http/1.1", get},
		{"http/1.0 only: no overlap, served without ALPN", []string{"http/1.0"}, "", "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: mta-sts.a.test\r\n\r\n"},
		{"an unknown protocol only", []string{"spdy/3"}, "", get},
		{"no ALPN", nil, "", get},
		{"acme-tls/1 beside http/1.1 is not a validation", []string{"acme-tls/1", "http/1.1"}, "http/1.1", get},
		{"acme-tls/1 alone with ACME off", []string{"acme-tls/1"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := &tls.Config{ServerName: "mta-sts.a.test", RootCAs: l.CA.Pool(), NextProtos: tt.offer}
			c, err := tls.Dial("tcp", r.https, conf)
			if tt.request == "" {
				if err == nil {
					c.Close()
					t.Fatal("the handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tt.negotiated {
				t.Errorf("negotiated %q, want %q", got, tt.negotiated)
			}
			var body []byte
			if tt.request == "h2" {
				tr := &http.Transport{Protocols: new(http.Protocols), DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
				tr.Protocols.SetHTTP2(true)
				resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://mta-sts.a.test/.well-known/mta-sts.txt")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
					t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
				}
				body, _ = io.ReadAll(resp.Body)
			} else {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, tt.request)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				body, _ = io.ReadAll(resp.Body)
			}
			if !strings.HasPrefix(string(body), "version: STSv1\r\n") {
				t.Errorf("body %q", body)
			}
		})
	}
	if n := metric(t, r.reg, "mailtls_host_handshakes_refused_total", "reason", "alpn"); n != 1 {
		t.Errorf("%v acme-tls/1 handshakes counted, want 1", n)
	}
}

// fakeACME stands in for certmagic: it answers every handshake with one
// certificate.
type fakeACME struct{ cert tls.Certificate }

func (f *fakeACME) GetCertificate(context.Context, *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &f.cert, nil
}
func (f *fakeACME) HTTPHandler(next http.Handler) http.Handler { return next }

// TestACMETLSConnectionsServeNothing: with ACME on, a TLS-ALPN-01
// validation gets its certificate, and nothing is ever served on that
// connection.
func TestACMETLSConnectionsServeNothing(t *testing.T) {
	l := lab.New(t)
	h := hostConfig(t, l, nil, "a.test")
	ids, _ := OpenIDStore("")
	h.Domains = append(h.Domains, Domain{Name: "b.test", Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MaxAge: mtasts.TestingMaxAge, MX: []string{"mx.b.test"}}})
	sites := h.build(t, ids)
	s := NewServer(slog.New(slog.DiscardHandler), h.Limits, &fakeACME{cert: l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mta-sts.b.test"}})}, nil)
	s.Swap(sites)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeHTTPS(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mta-sts.b.test", RootCAs: l.CA.Pool(), NextProtos: []string{"acme-tls/1"}})
	if err != nil {
		t.Fatalf("validation handshake: %v", err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "acme-tls/1" {
		t.Fatalf("negotiated %q", p)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.b.test\r\n\r\n")
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil {
		t.Errorf("an acme-tls/1 connection answered %q (%v); it must be closed without a word", b, err)
	}
}

// TestStaticCertificates: a certificate file is read with a cap and must
// cover mta-sts.<domain> (RFC 8461 §3.3); one that expires soon or has
// expired is loaded, and its state says so.
func TestStaticCertificates(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	build := func(certFile, keyFile string) (*Sites, error) {
		ids, _ := OpenIDStore("")
		certPEM, _ := os.ReadFile(certFile)
		keyPEM, _ := os.ReadFile(keyFile)
		return Build([]Domain{{Name: "a.test", Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeNone, MaxAge: mtasts.TestingMaxAge},
			CertFile: certFile, CertPEM: certPEM, KeyPEM: keyPEM}}, "", ids, now)
	}
	leaf := func(o lab.LeafOptions) (string, string) {
		return l.CA.MustWriteLeaf(t, t.TempDir(), o)
	}
	good, goodKey := leaf(lab.LeafOptions{DNSNames: []string{"mta-sts.a.test"}})
	wild, wildKey := leaf(lab.LeafOptions{DNSNames: []string{"*.a.test"}})
	other, otherKey := leaf(lab.LeafOptions{DNSNames: []string{"mta-sts.b.test", "b.test"}})
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"a certificate for the host", good, goodKey, ""},
		{"a wildcard covering the host", wild, wildKey, ""},
		{"a certificate for another name", other, otherKey, "it is for mta-sts.b.test, b.test, not mta-sts.a.test"},
		{"a key of another certificate", good, otherKey, "private key does not match"},
		{"no PEM in the file", junk, goodKey, "failed to find any PEM data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(tt.cert, tt.key)
			var ce *CertError
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (!errors.As(err, &ce) || ce.Domain != "a.test" || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want a CertError for a.test containing %q", err, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		name     string
		from, to time.Time
		want     CertState
	}{
		{"valid for months", now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), CertOK},
		{"expires in 10 days", now.Add(-time.Hour), now.Add(10 * 24 * time.Hour), CertExpiring},
		{"expired", now.Add(-90 * 24 * time.Hour), now.Add(-time.Hour), CertExpired},
		{"not yet valid", now.Add(time.Hour), now.Add(90 * 24 * time.Hour), CertNotYetValid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, k := leaf(lab.LeafOptions{DNSNames: []string{"mta-sts.a.test"}, NotBefore: tt.from, NotAfter: tt.to})
			sites, err := build(c, k)
			if err != nil {
				t.Fatalf("a certificate that is not valid now is still loaded: %v", err)
			}
			if got := sites.Lookup("mta-sts.a.test").CertState(now); got != tt.want {
				t.Errorf("state %q, want %q", got, tt.want)
			}
		})
	}
}
