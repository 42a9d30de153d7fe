package fetch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/webpki"
)

const policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n"

func fetcher(l *lab.Lab) *Fetcher {
	return &Fetcher{Dialer: l.Dialer(), Roots: l.CA.Pool(), ConnectTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second, ResponseTimeout: 2 * time.Second}
}

// host registers mta-sts.<domain> with a certificate and handler and returns
// the address senders would connect to.
func host(t *testing.T, l *lab.Lab, domain string, cert tls.Certificate, h http.Handler, opts lab.HostOptions) netip.Addr {
	t.Helper()
	name := "mta-sts." + domain
	if cert.Certificate == nil {
		cert = l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{name}})
	}
	l.HTTPS.HostWith(name, cert, h, opts)
	addr := l.NextAddr()
	if err := l.MapAddr(l.HTTPS.Addr(), addr, 443); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestFetch(t *testing.T) {
	l := lab.New(t)
	now := time.Now()
	name := func(d string) []string { return []string{"mta-sts." + d} }
	tests := []struct {
		domain     string
		cert       func() tls.Certificate
		handler    http.Handler
		opts       lab.HostOptions
		wantStatus int
		wantCode   webpki.Code // certificate problem expected; "" = chain accepted
		check      func(t *testing.T, r *Result)
	}{
		{domain: "good.test", handler: lab.Static(200, "text/plain; charset=utf-8", policy), wantStatus: 200,
			check: func(t *testing.T, r *Result) {
				if string(r.Body) != policy || r.Header["Content-Type"] != "text/plain; charset=utf-8" || r.TLS.Version != "TLS 1.3" {
					t.Errorf("body %q, header %v, version %s", r.Body, r.Header, r.TLS.Version)
				}
				if r.Timings.Total <= 0 || r.Timings.Total < r.Timings.Connect {
					t.Errorf("timings %+v", r.Timings)
				}
			}},
		{domain: "expired.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: name("expired.test"), NotBefore: now.Add(-100 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.Expired},
		{domain: "future.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: name("future.test"), NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(100 * 24 * time.Hour)})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.NotYetValid},
		{domain: "soon.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: name("soon.test"), NotAfter: now.Add(3 * 24 * time.Hour)})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.ExpiresSoon},
		{domain: "wrongname.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"www.wrongname.test", "wrongname.test"}})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.NameMismatch},
		{domain: "cnonly.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{CommonName: "mta-sts.cnonly.test"})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.NameMismatch},
		{domain: "selfsigned.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: name("selfsigned.test"), SelfSigned: true})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.SelfSigned},
		{domain: "untrusted.test", cert: func() tls.Certificate {
			return l.Untrusted.MustIssue(t, lab.LeafOptions{DNSNames: name("untrusted.test")})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.Untrusted},
		{domain: "nochain.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: name("nochain.test"), OmitIntermediate: true})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200, wantCode: webpki.IncompleteChain},
		{domain: "wildcard.test", cert: func() tls.Certificate {
			return l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"*.wildcard.test"}})
		}, handler: lab.Static(200, "text/plain", policy), wantStatus: 200},
		{domain: "tls11.test", handler: lab.Static(200, "text/plain", policy), opts: lab.HostOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, wantStatus: 200,
			check: func(t *testing.T, r *Result) {
				if r.TLS.Version != "TLS 1.1" {
					t.Errorf("version %s, want TLS 1.1", r.TLS.Version)
				}
			}},
		{domain: "redirect.test", handler: lab.Redirect(301, "https://www.redirect.test/.well-known/mta-sts.txt"), wantStatus: 301,
			check: func(t *testing.T, r *Result) {
				if r.Header["Location"] != "https://www.redirect.test/.well-known/mta-sts.txt" {
					t.Errorf("Location = %q", r.Header["Location"])
				}
			}},
		{domain: "notfound.test", handler: lab.Static(404, "text/html", "<h1>not found</h1>"), wantStatus: 404},
		{domain: "notype.test", handler: lab.Static(200, "", policy), wantStatus: 200,
			check: func(t *testing.T, r *Result) {
				if _, ok := r.Header["Content-Type"]; ok {
					t.Errorf("Content-Type recorded although none was sent: %v", r.Header)
				}
			}},
		{domain: "endless.test", handler: lab.Endless(), wantStatus: 200,
			check: func(t *testing.T, r *Result) {
				if !r.TooLarge || len(r.Body) != DefaultMaxBody || r.BodyBytes != DefaultMaxBody+1 {
					t.Errorf("too large %v, body %d bytes, read %d", r.TooLarge, len(r.Body), r.BodyBytes)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			var cert tls.Certificate
			if tt.cert != nil {
				cert = tt.cert()
			}
			addr := host(t, l, tt.domain, cert, tt.handler, tt.opts)
			r := fetcher(l).Fetch(context.Background(), "mta-sts."+tt.domain, addr)
			if r.Error != "" {
				t.Fatalf("fetch error %s: %s", r.Class, r.Error)
			}
			if r.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", r.Status, tt.wantStatus)
			}
			v := r.TLS.Verdict
			if tt.wantCode == "" && (!v.OK() || len(v.Problems) > 0) {
				t.Errorf("verdict %+v, want a clean chain", v)
			}
			if tt.wantCode != "" && !v.Has(tt.wantCode) {
				t.Errorf("verdict %+v, want problem %s", v, tt.wantCode)
			}
			if r.Address != addr.String()+":443" || r.Dialed == "" {
				t.Errorf("address %q dialed %q", r.Address, r.Dialed)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestHostileServers proves that a fetch against a server that stalls,
// streams garbage, refuses or answers slowly ends in bounded time with a
// classified error (STS-FETCH-13).
func TestHostileServers(t *testing.T) {
	l := lab.New(t)
	stall, endless := lab.NewStall(t), lab.NewEndless(t)
	// A port the lab holds without listening: refused, and nothing else can
	// take it meanwhile.
	refusedAddr := l.Dialer().Target("", l.MustRefusedAddr(t, 443), 443)
	slow := host(t, l, "slow.test", tls.Certificate{}, lab.Slow(3*time.Second, lab.Static(200, "text/plain", policy)), lab.HostOptions{})
	// A fatal protocol_version alert (RFC 8446 §6), and a ServerHello
	// that chooses SSL 3.0 (RFC 5246 §7.4.1.3), which crypto/tls refuses.
	versionAlert := lab.NewReply(t, []byte{21, 3, 3, 0, 2, 2, 70})
	hello := append([]byte{22, 3, 0, 0, 42, 2, 0, 0, 38, 3, 0}, make([]byte, 32)...)
	ssl3 := lab.NewReply(t, append(hello, 0, 0, 0x2f, 0))

	tests := []struct {
		name     string
		listener string
		addr     netip.Addr
		want     Class
	}{
		{"stalled handshake", stall.Addr(), netip.Addr{}, TLSTimeout},
		{"garbage instead of TLS", endless.Addr(), netip.Addr{}, TLSError},
		{"STS-FETCH-3 no common TLS version: protocol_version alert", versionAlert.Addr(), netip.Addr{}, TLSVersion},
		{"STS-FETCH-3 no common TLS version: SSL 3.0", ssl3.Addr(), netip.Addr{}, TLSVersion},
		{"refused", refusedAddr, netip.Addr{}, ConnectRefused},
		{"slow response", "", slow, HTTPTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if tt.listener != "" {
				addr = l.NextAddr()
				if err := l.MapAddr(tt.listener, addr, 443); err != nil {
					t.Fatal(err)
				}
			}
			f := fetcher(l)
			f.HandshakeTimeout, f.ResponseTimeout = 300*time.Millisecond, 300*time.Millisecond
			start := time.Now()
			r := f.Fetch(context.Background(), "mta-sts.slow.test", addr)
			if r.Class != tt.want {
				t.Errorf("class %q (%s), want %q", r.Class, r.Error, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v; the phase timeouts should bound it", d)
			}
		})
	}
}

// TestCutOffBodyIsNoPolicy: a body the deadline cuts off (a slow drip) or
// that ends short of its Content-Length is a failed fetch and keeps no
// bytes that could be read as a policy (issue 8 #6).
func TestCutOffBodyIsNoPolicy(t *testing.T) {
	l := lab.New(t)
	drip := host(t, l, "drip.test", tls.Certificate{}, lab.Drip("version: STSv1\r\nmode: enf", 50*time.Millisecond), lab.HostOptions{})
	short := host(t, l, "short.test", tls.Certificate{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "500")
		_, _ = w.Write([]byte("version: STSv1\r\nmode: enf"))
		// The handler returns: net/http closes the connection short of
		// the announced length.
	}), lab.HostOptions{})
	for _, tt := range []struct {
		name string
		addr netip.Addr
		want Class
	}{{"drip.test", drip, HTTPTimeout}, {"short.test", short, HTTPError}} {
		t.Run(tt.name, func(t *testing.T) {
			f := fetcher(l)
			f.ResponseTimeout = 500 * time.Millisecond
			r := f.Fetch(context.Background(), "mta-sts."+tt.name, tt.addr)
			if r.Class != tt.want || r.Error == "" {
				t.Errorf("class %q (%s), want %q", r.Class, r.Error, tt.want)
			}
			if r.Status != 200 || len(r.Body) != 0 || r.BodyBytes == 0 {
				t.Errorf("status %d, body %q (%d bytes read): the cut-off bytes must not be kept", r.Status, r.Body, r.BodyBytes)
			}
		})
	}
}

// TestFetchAsSenders: besides the request without Accept-Encoding, the
// policy is fetched with each header the sender models send, and bodies
// are kept as received (issue 8 #5).
func TestFetchAsSenders(t *testing.T) {
	l := lab.New(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	curves := map[string]tls.CurveID{}
	addr := host(t, l, "coded.test", tls.Certificate{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae := r.Header.Get("Accept-Encoding")
		mu.Lock()
		seen[ae] = true
		curves[ae] = r.TLS.CurveID
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		if ae != "" {
			w.Header().Set("Content-Encoding", "gzip")
		}
		_, _ = io.WriteString(w, "as sent for "+ae)
	}), lab.HostOptions{})
	r := fetcher(l).Fetch(context.Background(), "mta-sts.coded.test", addr)
	if r.Error != "" || string(r.Body) != "as sent for " || r.Header["Content-Encoding"] != "" {
		t.Fatalf("main fetch: %s, body %q, headers %v", r.Error, r.Body, r.Header)
	}
	want := mtasts.AcceptEncodings()
	if len(want) == 0 || len(r.Encoded) != len(want) {
		t.Fatalf("encoded fetches %+v, want one per header %q", r.Encoded, want)
	}
	for i, v := range r.Encoded {
		if v.AcceptEncoding != want[i] || v.Status != 200 || string(v.Body) != "as sent for "+want[i] || v.Header["Content-Encoding"] != "gzip" {
			t.Errorf("variant %d: %+v", i, v)
		}
		if !seen[want[i]] {
			t.Errorf("the server never saw Accept-Encoding: %s", want[i])
		}
		// The variants leave out the hybrid key share (CPU in bulk
		// scans); their handshake is not evidence.
		if c := curves[want[i]]; c != tls.X25519 {
			t.Errorf("variant %q: key exchange %v, want X25519", want[i], c)
		}
	}
	// The request whose TLS is the evidence offers what senders' stacks
	// offer by default, the hybrid post-quantum group first.
	if c := curves[""]; c != tls.X25519MLKEM768 {
		t.Errorf("main fetch: key exchange %v, want X25519MLKEM768 (Go's default)", c)
	}
	f := fetcher(l)
	f.AcceptEncodings = []string{}
	if r := f.Fetch(context.Background(), "mta-sts.coded.test", addr); len(r.Encoded) != 0 {
		t.Errorf("AcceptEncodings empty: %d extra fetches", len(r.Encoded))
	}
}

func TestContextBoundsFetch(t *testing.T) {
	l := lab.New(t)
	stall := lab.NewStall(t)
	addr := l.NextAddr()
	if err := l.MapAddr(stall.Addr(), addr, 443); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := (&Fetcher{Dialer: l.Dialer()}).Fetch(ctx, "mta-sts.x.test", addr)
	if r.Class != TLSTimeout || time.Since(start) > time.Second {
		t.Errorf("class %q after %v", r.Class, time.Since(start))
	}
}

func TestHostOverride(t *testing.T) {
	l := lab.New(t)
	host(t, l, "override.test", tls.Certificate{}, lab.Static(200, "text/plain", policy), lab.HostOptions{})
	f := fetcher(l)
	f.Dialer.Rules = append(f.Dialer.Rules, mustRule(t, "mta-sts.override.test:443:"+l.HTTPS.Addr()))
	r := f.Fetch(context.Background(), "mta-sts.override.test", netip.Addr{})
	if r.Error != "" || r.Status != 200 || r.Address != "" || r.Dialed != l.HTTPS.Addr() {
		t.Errorf("override fetch: %+v", r)
	}
}

func mustRule(t *testing.T, s string) dial.Rule {
	t.Helper()
	r, err := dial.ParseRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBodyJSON(t *testing.T) {
	for _, b := range []Body{Body("version: STSv1\r\n"), Body("\xef\xbb\xbfversion"), Body("\xff\xfe"), Body("")} {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var got Body
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual([]byte(got), []byte(b)) && !(len(got) == 0 && len(b) == 0) {
			t.Errorf("round trip of %q via %s = %q", b, data, got)
		}
		if strings.Contains(string(data), "base64") == (string(b) == string([]byte(b)) && validUTF8(b)) {
			t.Errorf("%q encoded as %s", b, data)
		}
	}
}

func validUTF8(b []byte) bool { return strings.ToValidUTF8(string(b), "\x00") == string(b) }
