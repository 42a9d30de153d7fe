package policyhost

import (
	"bufio"
	"context"
	"crypto/tls"
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

	"github.com/mailtls/mailtls/internal/config"
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

// hostConfig parses a configuration that serves domains with static lab
// certificates; extra is more YAML under "host:".
func hostConfig(t *testing.T, l *lab.Lab, extra string, domains ...string) *config.Host {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "host:\n  storage: %s\n  acme: {disabled: true}\n%s  domains:\n", t.TempDir(), extra)
	for _, d := range domains {
		cert, key := writeCert(t, l.CA, "mta-sts."+d)
		fmt.Fprintf(&b, "    %s:\n      mode: enforce\n      mx: [mx1.%s, \"*.mail.%s\"]\n      cert: %s\n      key: %s\n", d, d, d, cert, key)
	}
	c, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return c.Host
}

type running struct {
	srv    *Server
	https  string
	plain  string
	dialer *dial.Dialer
	ids    *IDStore
}

func start(t *testing.T, l *lab.Lab, h *config.Host) *running {
	t.Helper()
	ids, err := OpenIDStore(filepath.Join(h.Storage, "ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	sites, _, err := Build(h, ids, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), h.Limits, nil, nil)
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
	r := &running{srv: s, https: ln.Addr().String(), plain: pl.Addr().String(), ids: ids}
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
	r := start(t, l, hostConfig(t, l, "", "a.test", "b.test"))
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
	r := start(t, l, hostConfig(t, l, "", "a.test", "b.test"))
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
	r := start(t, l, hostConfig(t, l, "", "a.test"))
	for _, sni := range []string{"mta-sts.other.test", "", "a.test"} {
		conn, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Errorf("SNI %q: handshake succeeded", sni)
		} else if !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("SNI %q: %v, want the unrecognized_name alert (RFC 6066 §3)", sni, err)
		}
	}
	if _, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "mta-sts.a.test", RootCAs: l.CA.Pool(), MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Error("TLS 1.1 was accepted; only 1.2 and newer (RFC 8461 §7.2)")
	}
}

func TestPlainHTTPNeverRedirects(t *testing.T) {
	l := lab.New(t)
	r := start(t, l, hostConfig(t, l, "", "a.test"))
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
}

func TestLimits(t *testing.T) {
	l := lab.New(t)
	t.Run("connections per IP", func(t *testing.T) {
		r := start(t, l, hostConfig(t, l, "  limits: {max_conns_per_ip: 2}\n", "a.test"))
		var conns []net.Conn
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", r.https)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		time.Sleep(50 * time.Millisecond)
		third, err := net.Dial("tcp", r.https)
		if err != nil {
			t.Fatal(err)
		}
		defer third.Close()
		third.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := third.Read(make([]byte, 1)); err == nil {
			t.Error("a third connection from one IP should be closed at once")
		}
	})

	t.Run("requests per IP", func(t *testing.T) {
		r := start(t, l, hostConfig(t, l, "  limits: {requests_per_second: 1, burst: 3}\n", "a.test"))
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
		r := start(t, l, hostConfig(t, l, "", "a.test"))
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
	h := hostConfig(t, l, "", "a.test")
	r := start(t, l, h)
	c := r.client(t, l, "mta-sts.a.test")
	resp, err := c.Get("https://mta-sts.a.test/.well-known/mta-sts.txt")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("before: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h2 := hostConfig(t, l, "", "b.test")
	sites, _, err := Build(h2, r.ids, nil, now)
	if err != nil {
		t.Fatal(err)
	}
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

func TestBuildFollowMX(t *testing.T) {
	h := &config.Host{CacheControl: "max-age=60", Domains: map[string]config.Domain{
		"f.test": {Mode: "testing", FollowMX: true},
		"u.test": {Mode: "testing", FollowMX: true},
	}}
	ids, _ := OpenIDStore("")
	sites, skipped, err := Build(h, ids, func(d string) ([]string, bool) {
		if d == "f.test" {
			return []string{"mx1.f.test", "*.mail.protection.outlook.com"}, true
		}
		return nil, false
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	site := sites.Lookup("MTA-STS.F.test.")
	if site == nil || strings.Join(site.Policy.MX, " ") != "mx1.f.test *.mail.protection.outlook.com" || site.Policy.MaxAge != 86400 {
		t.Fatalf("site %+v", site)
	}
	if _, ok := skipped["u.test"]; !ok || sites.Lookup("mta-sts.u.test") != nil {
		t.Errorf("a follow_mx domain without a known MX set is not served yet: %v", skipped)
	}
}
