package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/lab"
)

var secret = []byte("whsec-test")

func TestSignVerify(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"alert"}`)
	h := Sign(secret, at, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	if err := Verify(secret, h, body, at.Add(time.Minute), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		header string
		body   string
		now    time.Time
		secret string
		want   error
	}{
		{"tampered body", h, `{"type":"resolved"}`, at, "", ErrBadSignature},
		{"other secret", h, string(body), at, "other", ErrBadSignature},
		{"replayed later", h, string(body), at.Add(6 * time.Minute), "", ErrStale},
		{"from the future", h, string(body), at.Add(-6 * time.Minute), "", ErrStale},
		{"no timestamp", "v1=00", string(body), at, "", ErrMalformed},
		{"no signature", "t=1800000000", string(body), at, "", ErrMalformed},
		{"garbage", "garbage", string(body), at, "", ErrMalformed},
		// The timestamp is signed: moving it breaks the signature.
		{"moved timestamp", strings.Replace(h, "t=1800000000", "t=1800000100", 1), string(body), at, "", ErrBadSignature},
	} {
		s := secret
		if c.secret != "" {
			s = []byte(c.secret)
		}
		if err := Verify(s, c.header, []byte(c.body), c.now, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// Rotation: a header with two v1 values passes with either secret.
	two := h + ",v1=" + strings.TrimPrefix(Sign([]byte("new"), at, body), "t=1800000000,v1=")
	if Verify(secret, two, body, at, 0) != nil || Verify([]byte("new"), two, body, at, 0) != nil {
		t.Error("a second v1 value is not accepted")
	}
}

func TestCheckURL(t *testing.T) {
	g := dial.NewGuardPorts(dial.WebhookPorts)
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/mailtls":      true,
		"https://hooks.example.com:443/x?a=b":    true,
		"https://93.184.215.14/hook":             true,
		"http://hooks.example.com/x":             false,
		"https://hooks.example.com:8443/x":       false,
		"https://user:pw@hooks.example.com/x":    false,
		"https://127.0.0.1/x":                    false,
		"https://10.1.2.3/x":                     false,
		"https://[::1]/x":                        false,
		"https://hooks.example.com/x#frag":       false,
		"ftp://hooks.example.com/":               false,
		"https://" + strings.Repeat("a", 2050):   false,
		"https:///nohost":                        false,
		"https://169.254.169.254/latest/meta-da": false,
	} {
		_, err := CheckURL(raw, g)
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%t", raw, err, ok)
		}
	}
}

// receiver is an HTTPS endpoint in the lab recording what it got.
type receiver struct {
	mu   sync.Mutex
	got  []*http.Request
	body []string
}

func newClient(t *testing.T, srv *lab.HTTPS, ca *lab.CA, lookup map[string]string) *Client {
	t.Helper()
	// The lab's fake public addresses are loopback ones: the guard lets
	// 127.0.0.0/8 through, as the web checker's tests do; everything else
	// it refuses as it would in production.
	d := &dial.Dialer{Guard: dial.NewGuardPorts(dial.WebhookPorts, netip.MustParsePrefix("127.0.0.0/8")),
		Net: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.Addr())
		}}
	c, err := New(Options{Dialer: d, Roots: ca.Pool(), Timeout: 5 * time.Second,
		Lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
			if ip, ok := lookup[host]; ok {
				return []netip.Addr{netip.MustParseAddr(ip)}, nil
			}
			return nil, errors.New("no such host")
		}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeliver(t *testing.T) {
	ca := lab.MustCA(t, "webhook test")
	srv := lab.NewHTTPS(t, "127.0.0.1:0")
	rec := &receiver{}
	srv.Host("hooks.example.test", ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"hooks.example.test"}}), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, r)
		rec.body = append(rec.body, string(b))
		rec.mu.Unlock()
		switch r.URL.Path {
		case "/fail":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "https://hooks.example.test/ok", http.StatusFound)
		case "/big":
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	c := newClient(t, srv, ca, map[string]string{"hooks.example.test": "127.0.0.50", "internal.example.test": "10.0.0.7"})
	at := time.Now()
	body := []byte(`{"type":"test"}`)
	d := Delivery{URL: "https://hooks.example.test/ok", Secret: secret, ID: "42", Event: "test", Body: body, At: at}
	r, err := c.Deliver(t.Context(), d)
	if err != nil || r.Status != 204 || r.Detail != "HTTP 204" {
		t.Fatalf("deliver: %+v %v", r, err)
	}
	got := rec.got[0]
	if got.Header.Get(DeliveryHeader) != "42" || got.Header.Get(EventHeader) != "test" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", got.Header)
	}
	if err := Verify(secret, got.Header.Get(SignatureHeader), []byte(rec.body[0]), time.Now(), 0); err != nil {
		t.Errorf("the receiver cannot verify the delivery: %v", err)
	}

	d.URL = "https://hooks.example.test/fail"
	if r, err := c.Deliver(t.Context(), d); err == nil || r.Status != 503 || !strings.Contains(r.Detail, "busy") {
		t.Errorf("503: %+v %v", r, err)
	}
	d.URL = "https://hooks.example.test/redirect"
	if r, err := c.Deliver(t.Context(), d); err == nil || r.Status != 302 || len(rec.got) != 3 {
		t.Errorf("a redirect must not be followed: %+v %v (%d requests)", r, err, len(rec.got))
	}
	d.URL = "https://hooks.example.test/big"
	if r, err := c.Deliver(t.Context(), d); err != nil || len(r.Detail) > 300 {
		t.Errorf("big answer: %d bytes of detail, %v", len(r.Detail), err)
	}
	// A name that points at a private address is refused at dial time.
	d.URL = "https://internal.example.test/ok"
	if _, err := c.Deliver(t.Context(), d); !errors.Is(err, dial.ErrBlocked) {
		t.Errorf("private target: %v, want blocked", err)
	}
	before := len(rec.got)
	d.URL = "https://127.0.0.50:8443/ok"
	if _, err := c.Deliver(t.Context(), d); !errors.Is(err, dial.ErrBlocked) || len(rec.got) != before {
		t.Errorf("another port: %v, want blocked", err)
	}
}

// FuzzVerify: any header and body are judged without a panic, and a
// header made by Sign for the body always verifies (and never for another
// body).
func FuzzVerify(f *testing.F) {
	f.Add("t=1800000000,v1=00", []byte(`{"type":"alert"}`))
	f.Add("v1=zz,t=x", []byte{})
	f.Add(",,,=,t=,v1=", []byte("x"))
	at := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		Verify(secret, header, body, at, 0)
		h := Sign(secret, at, body)
		if err := Verify(secret, h, body, at, 0); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if err := Verify(secret, h, append(body, 'x'), at, 0); err == nil {
			t.Fatal("a changed body verified")
		}
	})
}
