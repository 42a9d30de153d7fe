package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/lab"
)

// labClient returns an HTTP client that resolves names with the lab DNS
// server and dials through the lab's connect-to rules, as a scanner would.
func labClient(t *testing.T, l *lab.Lab, roots *x509.CertPool) *http.Client {
	t.Helper()
	resolver := l.DNS.NetResolver()
	d := l.Dialer()
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
				host, p, err := net.SplitHostPort(hostport)
				if err != nil {
					return nil, err
				}
				port, err := strconv.Atoi(p)
				if err != nil {
					return nil, err
				}
				ips, err := resolver.LookupNetIP(ctx, "ip4", host)
				if err != nil {
					return nil, err
				}
				var nd net.Dialer
				return nd.DialContext(ctx, network, d.Target(host, ips[0], port))
			},
		},
	}
}

const policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

func TestPolicyHost(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	l.DNS.MustAdd(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`)
	addr := l.MustPolicyHost(t, "example.test", lab.PolicyHostOptions{Body: policy})

	ips, err := l.DNS.NetResolver().LookupNetIP(t.Context(), "ip4", "mta-sts.example.test")
	if err != nil || !slices.Equal(ips, []netip.Addr{addr}) {
		t.Fatalf("A mta-sts.example.test = %v, %v; want [%v]", ips, err, addr)
	}

	resp, body := get(t, labClient(t, l, l.CA.Pool()), "https://mta-sts.example.test/.well-known/mta-sts.txt")
	if resp.StatusCode != http.StatusOK || body != policy {
		t.Errorf("policy fetch = %d %q, want 200 %q", resp.StatusCode, body, policy)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", got)
	}
}

func TestPolicyHostVariants(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	untrusted := l.Untrusted.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mta-sts.untrusted.test"}})
	l.MustPolicyHost(t, "untrusted.test", lab.PolicyHostOptions{Body: policy, Cert: untrusted})
	l.MustPolicyHost(t, "handler.test.", lab.PolicyHostOptions{Handler: lab.Static(http.StatusNotFound, "", "")})
	l.MustPolicyHost(t, "old.test", lab.PolicyHostOptions{Body: policy, TLS: lab.HostOptions{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}})
	c := labClient(t, l, l.CA.Pool())

	_, err := c.Get("https://mta-sts.untrusted.test/.well-known/mta-sts.txt")
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("untrusted cert: err = %v, want x509.UnknownAuthorityError", err)
	}
	resp, _ := get(t, c, "https://mta-sts.handler.test/.well-known/mta-sts.txt")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("custom handler: status = %d, want 404", resp.StatusCode)
	}
	if _, err := c.Get("https://mta-sts.old.test/.well-known/mta-sts.txt"); err == nil {
		t.Errorf("TLS 1.1-only host: fetch succeeded, want a handshake failure")
	}
}

func TestNextAddr(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	var got []string
	for range 3 {
		got = append(got, l.NextAddr().String())
	}
	if want := []string{"127.0.0.10", "127.0.0.11", "127.0.0.12"}; !slices.Equal(got, want) {
		t.Errorf("NextAddr() ×3 = %v, want %v", got, want)
	}
	if got := l.NextAddr6(); got != netip.IPv6Loopback() {
		t.Errorf("NextAddr6() = %v, want ::1", got)
	}
}

func TestMapAddr(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	v4 := l.NextAddr()
	_, httpsPort, _ := net.SplitHostPort(l.HTTPS.Addr())
	if err := l.MapAddr("127.0.0.1:1", v4, 443); err != nil {
		t.Fatal(err)
	}
	if err := l.MapAddr(l.HTTPS.Addr(), v4, 443); err != nil { // replaces the rule above
		t.Fatal(err)
	}
	if err := l.MapAddr(l.HTTPS.Addr(), l.NextAddr6(), 443); err != nil {
		t.Fatal(err)
	}
	if err := l.MapAddr("[::1]:2525", v4, 25); err != nil {
		t.Fatal(err)
	}

	wantFlags := []string{
		"127.0.0.10:443:127.0.0.1:" + httpsPort,
		"[::1]:443:127.0.0.1:" + httpsPort,
		"127.0.0.10:25:[::1]:2525",
	}
	if got := l.ConnectToFlags(); !slices.Equal(got, wantFlags) {
		t.Errorf("ConnectToFlags() = %q, want %q", got, wantFlags)
	}
	for _, f := range wantFlags {
		r, err := dial.ParseRule(f)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", f, err)
		} else if !slices.Contains(l.Rules(), r) {
			t.Errorf("ParseRule(%q) = %+v, not in Rules() %+v", f, r, l.Rules())
		}
	}

	d := l.Dialer()
	targets := []struct {
		ip   netip.Addr
		port int
		want string
	}{
		{v4, 443, l.HTTPS.Addr()},
		{netip.IPv6Loopback(), 443, l.HTTPS.Addr()},
		{v4, 25, "[::1]:2525"},
		{v4, 80, "127.0.0.10:80"},
	}
	for _, tt := range targets {
		if got := d.Target("mta-sts.example.test", tt.ip, tt.port); got != tt.want {
			t.Errorf("Target(%v, %d) = %s, want %s", tt.ip, tt.port, got, tt.want)
		}
	}

	bad := []struct {
		listener string
		fake     netip.Addr
		port     int
	}{
		{"no-port", v4, 443},
		{"127.0.0.1:0", v4, 443},
		{"127.0.0.1:x", v4, 443},
		{l.HTTPS.Addr(), netip.Addr{}, 443},
		{l.HTTPS.Addr(), v4, 0},
		{l.HTTPS.Addr(), v4, 70000},
	}
	for _, tt := range bad {
		if err := l.MapAddr(tt.listener, tt.fake, tt.port); err == nil {
			t.Errorf("MapAddr(%q, %v, %d) = nil, want an error", tt.listener, tt.fake, tt.port)
		}
	}
}

func TestSlowNet(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	const latency = 50 * time.Millisecond
	slow := l.SlowNet(latency)

	start := time.Now()
	conn, err := slow(t.Context(), "tcp", l.HTTPS.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("dial took %v, want at least %v", elapsed, latency)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := slow(ctx, "tcp", l.HTTPS.Addr()); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a cancelled ctx: err = %v, want context.Canceled", err)
	}

	// Through a dial.Dialer, as benchmarks use it.
	l.MustPolicyHost(t, "example.test", lab.PolicyHostOptions{Body: policy})
	d := l.Dialer()
	d.Net = slow
	start = time.Now()
	conn, err = d.Dial(t.Context(), "mta-sts.example.test", netip.MustParseAddr("127.0.0.10"), 443)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("dial through Dialer took %v, want at least %v", elapsed, latency)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: "mta-sts.example.test", RootCAs: l.CA.Pool()})
	if err := tc.HandshakeContext(t.Context()); err != nil {
		t.Errorf("handshake through the slow dialer: %v", err)
	}
}

// ExampleStart shows the lab outside a test, as a benchmark uses it.
func ExampleStart() {
	l, err := lab.Start()
	if err != nil {
		panic(err)
	}
	defer l.Close()
	if err := l.DNS.Add(`_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`); err != nil {
		panic(err)
	}
	addr, err := l.PolicyHost("example.test", lab.PolicyHostOptions{Body: policy})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: l.CA.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return l.Dialer().Dial(ctx, "mta-sts.example.test", addr, 443)
		},
	}}
	resp, err := client.Get("https://mta-sts.example.test/.well-known/mta-sts.txt")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(addr, resp.Status)
	fmt.Printf("%q\n", body[:14])
	// Output:
	// 127.0.0.10 200 OK
	// "version: STSv1"
}

// TestRefusedAddr: connections to a refused address are refused, every
// time, through the lab's dial rules; and nothing else can take the port.
func TestRefusedAddr(t *testing.T) {
	l := lab.New(t)
	addr := l.MustRefusedAddr(t, 443)
	d := l.Dialer()
	for i := 0; i < 3; i++ {
		c, err := d.Dial(context.Background(), "mta-sts.example.test", addr, 443)
		if err == nil {
			c.Close()
			t.Fatal("a connection to a refused address succeeded")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("error %v, want connection refused", err)
		}
	}
	target := d.Target("mta-sts.example.test", addr, 443)
	if ln, err := net.Listen("tcp", target); err == nil {
		ln.Close()
		t.Errorf("another listener could take %s", target)
	}
	if other := l.MustRefusedAddr(t, 443); other == addr {
		t.Error("each refused address is a new fake address")
	}
}
