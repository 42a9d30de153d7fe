package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// clientTo returns an HTTP client that sends every connection to addr and
// trusts roots.
func clientTo(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(body)
}

func TestHTTPSVirtualHosts(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	for _, name := range []string{"a.example.test", "b.example.test"} {
		s.Host(name, ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{name}}), lab.Static(http.StatusOK, "text/plain", "I am "+name))
	}
	c := clientTo(s.Addr(), ca.Pool())
	tests := []struct {
		url      string
		wantCode int
		wantBody string
	}{
		{"https://a.example.test/", http.StatusOK, "I am a.example.test"},
		{"https://B.Example.Test/.well-known/mta-sts.txt", http.StatusOK, "I am b.example.test"},
	}
	for _, tt := range tests {
		resp, body := get(t, c, tt.url)
		if resp.StatusCode != tt.wantCode || body != tt.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tt.url, resp.StatusCode, body, tt.wantCode, tt.wantBody)
		}
		if resp.TLS == nil || resp.ProtoMajor != 1 {
			t.Errorf("GET %s: %s over TLS %v, want HTTP/1.x over TLS", tt.url, resp.Proto, resp.TLS != nil)
		}
	}
	// A client offering h2 gets HTTP/1.1.
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: "a.example.test", RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Errorf("ALPN = %q, want http/1.1", got)
	}
}

func TestHTTPSUnknownSNI(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	s.Host("a.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"a.example.test"}}), lab.Static(200, "", "x"))
	for _, sni := range []string{"unknown.example.test", ""} {
		t.Run("sni="+sni, func(t *testing.T) {
			t.Parallel()
			conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
			if err == nil {
				conn.Close()
				t.Fatal("handshake succeeded, want an alert")
			}
			if !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("handshake error = %v, want an unrecognized_name alert", err)
			}
		})
	}
}

func TestHTTPSUnknownHostHeader(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	s.Host("a.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"a.example.test"}}), lab.Static(200, "", "x"))
	c := clientTo(s.Addr(), ca.Pool())
	req, err := http.NewRequest(http.MethodGet, "https://a.example.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "other.example.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("status = %d, want %d", resp.StatusCode, http.StatusMisdirectedRequest)
	}
}

func TestHTTPSVersions(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	const old = "old.example.test"
	s.HostWith(old, ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{old}}), lab.Static(200, "", "x"),
		lab.HostOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	tests := []struct {
		name        string
		min         uint16
		wantVersion uint16 // 0: handshake fails
	}{
		{"modern client refuses", tls.VersionTLS12, 0},
		{"legacy client gets TLS 1.1", tls.VersionTLS10, tls.VersionTLS11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: old, RootCAs: ca.Pool(), MinVersion: tt.min})
			if tt.wantVersion == 0 {
				if err == nil {
					conn.Close()
					t.Fatal("handshake succeeded, want a protocol version failure")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().Version; got != tt.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(got), tls.VersionName(tt.wantVersion))
			}
		})
	}
}

func TestHTTPSHandlers(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	hosts := map[string]http.Handler{
		"plain.example.test":    lab.Static(http.StatusOK, "text/plain", "body"),
		"notype.example.test":   lab.Static(http.StatusOK, "", "<html>sniff me</html>"),
		"missing.example.test":  lab.Static(http.StatusNotFound, "text/plain", "gone"),
		"redirect.example.test": lab.Redirect(http.StatusMovedPermanently, "https://elsewhere.example.test/"),
		"slow.example.test":     lab.Slow(50*time.Millisecond, lab.Static(http.StatusOK, "text/plain", "late")),
	}
	for name, h := range hosts {
		s.Host(name, ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{name}}), h)
	}
	c := clientTo(s.Addr(), ca.Pool())
	tests := []struct {
		host         string
		wantCode     int
		wantType     []string // nil: no Content-Type header
		wantBody     string
		wantLocation string
	}{
		{"plain.example.test", 200, []string{"text/plain"}, "body", ""},
		{"notype.example.test", 200, nil, "<html>sniff me</html>", ""},
		{"missing.example.test", 404, []string{"text/plain"}, "gone", ""},
		{"redirect.example.test", 301, nil, "", "https://elsewhere.example.test/"},
		{"slow.example.test", 200, []string{"text/plain"}, "late", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, c, "https://"+tt.host+"/")
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if got := resp.Header.Values("Content-Type"); !slices.Equal(got, tt.wantType) {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			if got := resp.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location = %q, want %q", got, tt.wantLocation)
			}
		})
	}
}

func TestHTTPSSlowTimesOut(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	s.Host("slow.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"slow.example.test"}}),
		lab.Slow(time.Minute, lab.Static(200, "", "never")))
	c := clientTo(s.Addr(), ca.Pool())
	c.Timeout = 100 * time.Millisecond
	start := time.Now()
	resp, err := c.Get("https://slow.example.test/")
	if err == nil {
		resp.Body.Close()
		t.Fatal("GET succeeded, want a timeout")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("timeout took %v", elapsed)
	}
}

func TestHTTPSEndless(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	s := lab.NewHTTPS(t, "")
	s.Host("big.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"big.example.test"}}), lab.Endless())
	c := clientTo(s.Addr(), ca.Pool())
	resp, err := c.Get("https://big.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	const limit = 1 << 20
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, limit))
	if err != nil || n != limit {
		t.Errorf("read %d bytes, %v; want %d bytes and more to come", n, err, limit)
	}
}

func TestRawServers(t *testing.T) {
	t.Parallel()
	t.Run("stall", func(t *testing.T) {
		t.Parallel()
		s := lab.NewStall(t)
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc := tls.Client(conn, &tls.Config{ServerName: "stall.example.test"})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		err = tc.HandshakeContext(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("handshake err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("endless", func(t *testing.T) {
		t.Parallel()
		s := lab.NewEndless(t)
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		const limit = 1 << 20
		n, err := io.Copy(io.Discard, io.LimitReader(conn, limit))
		if err != nil || n != limit {
			t.Errorf("read %d bytes, %v; want %d", n, err, limit)
		}
	})
	t.Run("close with open connections", func(t *testing.T) {
		t.Parallel()
		for _, start := range []func() (*lab.RawServer, error){lab.StartStall, lab.StartEndless} {
			s, err := start()
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { s.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
			conn.Close()
			s.Close() // twice is fine
		}
	})
}

func TestHTTPSIPv6(t *testing.T) {
	t.Parallel()
	s, err := lab.StartHTTPS("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer s.Close()
	ca := lab.MustCA(t, "test")
	s.Host("v6.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"v6.example.test"}}), lab.Static(200, "text/plain", "six"))
	if host, _, _ := net.SplitHostPort(s.Addr()); host != "::1" {
		t.Errorf("Addr() = %s, want [::1]:PORT", s.Addr())
	}
	_, body := get(t, clientTo(s.Addr(), ca.Pool()), "https://v6.example.test/")
	if body != "six" {
		t.Errorf("body = %q, want %q", body, "six")
	}
}
