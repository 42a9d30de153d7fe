// Package fetch gets an MTA-STS policy over HTTPS the way senders do
// (RFC 8461 §3.3) and records everything it saw as evidence: the address,
// the TLS version, the presented chain and its verdict, the status, headers
// and body, and timings. It never follows redirects, reads at most 64 KiB of
// body, and bounds every phase in time.
//
// Unlike a sender it does not stop at a bad certificate: it records the
// verdict and still reads the response, so a report can say what the policy
// would have been.
package fetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Default limits. The RFC suggests one minute and 64 KiB (RFC 8461 §3.3);
// the phase timeouts sit inside the scan's own budget.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultResponseTimeout  = 20 * time.Second
	DefaultMaxBody          = 65536
	// maxResponse bounds everything read from the server, headers included.
	maxResponse = 1 << 20
)

// Class says which phase of a fetch failed.
type Class string

// Failure classes.
const (
	ConnectRefused Class = "connect-refused"
	ConnectTimeout Class = "connect-timeout"
	ConnectError   Class = "connect-error" // unreachable, reset and other network errors
	// ConnectBlocked: a guarded scan (the web checker) did not connect,
	// because the address is not a public one (dial.Guard).
	ConnectBlocked Class = "connect-blocked"
	TLSTimeout     Class = "tls-timeout"
	// TLSVersion: the server shares no TLS version with the fetch, which
	// offers TLS 1.0 to 1.3: it answered with a protocol_version alert or
	// chose SSL 3.0 (RFC 8446 §4.1.3, RFC 5246 §7.2.2).
	TLSVersion  Class = "tls-version"
	TLSError    Class = "tls-error" // any other handshake failure: an alert, not TLS
	HTTPTimeout Class = "http-timeout"
	HTTPError   Class = "http-error" // malformed or cut-off response
)

// Result is everything observed fetching the policy from one address.
type Result struct {
	URL       string            `json:"url"`
	Host      string            `json:"host"`
	Address   string            `json:"address"`          // ip:port a sender would connect to ("" with a host override)
	Dialed    string            `json:"dialed,omitempty"` // where the connection really went, when a connect-to rule applied
	Error     string            `json:"error,omitempty"`
	Class     Class             `json:"error_class,omitempty"`
	TLS       *TLS              `json:"tls,omitempty"`
	Status    int               `json:"status,omitempty"`
	Header    map[string]string `json:"headers,omitempty"` // selected response headers
	Body      Body              `json:"body,omitempty"`    // at most MaxBody bytes; none when reading it failed
	BodyBytes int64             `json:"body_bytes"`        // bytes read (up to MaxBody+1)
	TooLarge  bool              `json:"too_large,omitempty"`
	// Encoded are the responses to the same request sent with the
	// Accept-Encoding headers senders send (the request above sends
	// none), so each sender model reads the response it would get.
	Encoded    []*Variant `json:"encoded,omitempty"`
	Timings    Timings    `json:"timings_ms"`
	StartedAt  time.Time  `json:"started_at"`
	finishedAt time.Time
}

// Variant is the response to the policy request sent with an
// Accept-Encoding header, fetched on its own connection. The body is kept
// as received (not decoded), at most MaxBody bytes.
type Variant struct {
	AcceptEncoding string            `json:"accept_encoding"`
	Error          string            `json:"error,omitempty"`
	Class          Class             `json:"error_class,omitempty"`
	Status         int               `json:"status,omitempty"`
	Header         map[string]string `json:"headers,omitempty"`
	Body           Body              `json:"body,omitempty"`
	BodyBytes      int64             `json:"body_bytes"`
	TooLarge       bool              `json:"too_large,omitempty"`
}

// TLS is the TLS evidence of a fetch.
type TLS struct {
	Version string         `json:"version"`
	Cipher  string         `json:"cipher"`
	Chain   []webpki.Cert  `json:"chain"`
	Verdict webpki.Verdict `json:"verdict"`
}

// Timings are milliseconds from the start of the fetch.
type Timings struct {
	Connect   float64 `json:"connect"`
	Handshake float64 `json:"handshake"`
	FirstByte float64 `json:"first_byte"`
	Total     float64 `json:"total"`
}

// Body is a policy body. It marshals as a JSON string when it is valid
// UTF-8 and as {"base64": "..."} otherwise, so evidence round-trips exactly.
type Body []byte

// MarshalJSON implements json.Marshaler.
func (b Body) MarshalJSON() ([]byte, error) {
	if utf8.Valid(b) {
		return json.Marshal(string(b))
	}
	return json.Marshal(struct {
		Base64 string `json:"base64"`
	}{base64.StdEncoding.EncodeToString(b)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *Body) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*b = Body(s)
		return nil
	}
	var o struct {
		Base64 string `json:"base64"`
	}
	if err := json.Unmarshal(data, &o); err != nil {
		return fmt.Errorf("fetch: body: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(o.Base64)
	*b = raw
	return err
}

// OK reports whether the fetch produced a response (any status); TLS may
// still have failed verification.
func (r *Result) OK() bool { return r.Error == "" }

// Fetcher fetches policies. The zero value uses system roots, direct dials,
// time.Now and the default limits.
type Fetcher struct {
	Dialer           *dial.Dialer
	Roots            *x509.CertPool // nil: system roots
	Now              func() time.Time
	ConnectTimeout   time.Duration
	HandshakeTimeout time.Duration
	ResponseTimeout  time.Duration
	MaxBody          int64
	UserAgent        string
	// AcceptEncodings are the Accept-Encoding headers of the extra
	// requests recorded in Result.Encoded; nil means those the sender
	// models send (mtasts.AcceptEncodings), an empty slice none.
	AcceptEncodings []string
}

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Fetch gets https://host/.well-known/mta-sts.txt from ip:443 without an
// Accept-Encoding header and, at the same time on their own connections,
// with each of the Accept-Encoding headers senders send (Result.Encoded).
// ip may be the zero Addr when the Dialer has a connect-to rule for host.
// It never returns nil and never panics on hostile input.
func (f *Fetcher) Fetch(ctx context.Context, host string, ip netip.Addr) *Result {
	encodings := f.AcceptEncodings
	if encodings == nil {
		encodings = mtasts.AcceptEncodings()
	}
	variants := make([]*Variant, len(encodings))
	var wg sync.WaitGroup
	for i, ae := range encodings {
		wg.Go(func() {
			v := f.fetch(ctx, host, ip, ae)
			variants[i] = &Variant{AcceptEncoding: ae, Error: v.Error, Class: v.Class, Status: v.Status,
				Header: v.Header, Body: v.Body, BodyBytes: v.BodyBytes, TooLarge: v.TooLarge}
		})
	}
	r := f.fetch(ctx, host, ip, "")
	wg.Wait()
	r.Encoded = variants
	return r
}

// variantCurves are the key exchanges of a Variant's handshake: Go's
// defaults without X25519MLKEM768.
var variantCurves = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// fetch makes one request, with the Accept-Encoding header ae unless empty.
func (f *Fetcher) fetch(ctx context.Context, host string, ip netip.Addr, ae string) *Result {
	r := &Result{URL: "https://" + host + mtasts.PolicyPath, Host: host, StartedAt: f.now().UTC()}
	if ip.IsValid() {
		r.Address = netip.AddrPortFrom(ip, 443).String()
	}
	if target := f.Dialer.Target(host, ip, 443); target != r.Address {
		r.Dialed = target
	}
	start := time.Now()
	ms := func() float64 { return float64(time.Since(start).Microseconds()) / 1000 }
	defer func() { r.Timings.Total = ms() }()

	cctx, cancel := context.WithTimeout(ctx, orDefault(f.ConnectTimeout, DefaultConnectTimeout))
	conn, err := f.Dialer.Dial(cctx, host, ip, 443)
	cancel()
	if err != nil {
		r.Class, r.Error = classifyConnect(err, ctx)
		return r
	}
	defer conn.Close()
	r.Timings.Connect = ms()

	// The verification is ours (webpki), so that a bad certificate is
	// recorded, classified and the response still read.
	first := &firstBytes{Conn: conn}
	cfg := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, // verified below with webpki.Verify
		MinVersion:         tls.VersionTLS10,
		NextProtos:         []string{"http/1.1"},
	}
	if ae != "" {
		// A Variant is about the HTTP response, not the handshake (its
		// TLS evidence is the request's without Accept-Encoding, which
		// offers the default key exchanges as senders do). Leaving out
		// the hybrid post-quantum key share spares about half the CPU of
		// each of these extra handshakes, which a bulk scan makes
		// thousands of; every server that completed the main handshake
		// also has one of these groups (RFC 8446 §9.1).
		cfg.CurvePreferences = variantCurves
	}
	tc := tls.Client(first, cfg)
	hctx, cancel := context.WithTimeout(ctx, orDefault(f.HandshakeTimeout, DefaultHandshakeTimeout))
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		r.Class, r.Error = classifyTLS(err, ctx, first.b)
		return r
	}
	r.Timings.Handshake = ms()
	if ae == "" {
		// The certificate evidence comes from the request without
		// Accept-Encoding; a Variant keeps none, so the chain is not
		// verified again for each (a bulk scan makes thousands).
		st := tc.ConnectionState()
		r.TLS = &TLS{
			Version: tls.VersionName(st.Version),
			Cipher:  tls.CipherSuiteName(st.CipherSuite),
			Chain:   webpki.Describe(st.PeerCertificates),
			Verdict: webpki.Verify(st.PeerCertificates, host, f.Roots, f.now()),
		}
	}

	deadline := time.Now().Add(orDefault(f.ResponseTimeout, DefaultResponseTimeout))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = tc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req, _ := http.NewRequest(http.MethodGet, r.URL, nil)
	req.Header.Set("User-Agent", f.userAgent())
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	req.Close = true
	if err := req.Write(tc); err != nil {
		r.Class, r.Error = classifyHTTP(err, ctx)
		return r
	}
	br := bufio.NewReader(io.LimitReader(tc, maxResponse))
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		r.Class, r.Error = classifyHTTP(err, ctx)
		return r
	}
	defer resp.Body.Close()
	r.Timings.FirstByte = ms()
	r.Status = resp.StatusCode
	r.Header = pickHeaders(resp.Header)
	maxBody := f.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	r.BodyBytes = int64(len(body))
	if int64(len(body)) > maxBody {
		r.TooLarge = true
		body = body[:maxBody]
	} else if err != nil {
		// A body cut off (deadline, reset, short of Content-Length) is a
		// failed fetch: the bytes read are not a policy, so none are kept
		// to be mistaken for one.
		r.Class, r.Error = classifyHTTP(fmt.Errorf("reading the body after %d bytes: %w", len(body), err), ctx)
		return r
	}
	r.Body = body
	return r
}

func (f *Fetcher) userAgent() string {
	if f.UserAgent != "" {
		return f.UserAgent
	}
	return "mailtls (MTA-STS policy check)"
}

// headersKept are the response headers kept as evidence.
var headersKept = []string{"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Location", "Cache-Control", "Expires", "Age", "Last-Modified", "ETag", "Server", "Set-Cookie"}

func pickHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for _, k := range headersKept {
		if v := h.Values(k); len(v) > 0 {
			s := strings.Join(v, ", ")
			if len(s) > 512 {
				s = s[:512] + "…"
			}
			out[k] = s
		}
	}
	return out
}

func isTimeout(err error, ctx context.Context) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || ctx.Err() != nil
}

func classifyConnect(err error, ctx context.Context) (Class, string) {
	var blocked *dial.BlockedError
	switch {
	case errors.As(err, &blocked):
		return ConnectBlocked, blocked.Error()
	case errors.Is(err, dial.ErrBlocked):
		return ConnectBlocked, err.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectRefused, "connection refused on port 443"
	case isTimeout(err, ctx):
		return ConnectTimeout, "connection to port 443 timed out"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ConnectError, "host or network unreachable: " + err.Error()
	}
	return ConnectError, "connection failed: " + err.Error()
}

// classifyTLS names a failed handshake; first is what the server sent
// first (the start of its first TLS record).
func classifyTLS(err error, ctx context.Context, first []byte) (Class, string) {
	if isTimeout(err, ctx) {
		return TLSTimeout, "the TLS handshake timed out"
	}
	if v, ok := noCommonVersion(first); ok {
		return TLSVersion, "the server accepts none of the TLS versions offered (1.0 to 1.3): " + v
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return TLSError, "the server does not speak TLS on port 443 (" + rh.Msg + ")"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return TLSError, "the server closed the connection during the TLS handshake"
	}
	return TLSError, "TLS handshake failed: " + err.Error()
}

// The TLS wire values noCommonVersion reads (RFC 8446 §5.1, §4, §6;
// RFC 5246 §7.2).
const (
	recordAlert          = 21
	recordHandshake      = 22
	handshakeServerHello = 2
	alertProtocolVersion = 70
	versionTLS10         = 0x0301
)

// noCommonVersion reads the start of the server's first TLS record and
// reports whether the server refused every version offered: a
// protocol_version alert, or a ServerHello that chose SSL 3.0 or older,
// which crypto/tls refuses. It says which in words.
func noCommonVersion(first []byte) (string, bool) {
	switch {
	case len(first) >= 7 && first[0] == recordAlert && first[6] == alertProtocolVersion:
		return "it answered with a protocol_version alert", true
	case len(first) >= 11 && first[0] == recordHandshake && first[5] == handshakeServerHello:
		if v := int(first[9])<<8 | int(first[10]); v < versionTLS10 {
			return fmt.Sprintf("it chose version 0x%04x (SSL 3.0 or older)", v), true
		}
	}
	return "", false
}

// firstBytes keeps the first bytes a connection reads: the TLS record
// header and the start of the first message (an alert, or the version in
// a ServerHello), which classifyTLS reads.
type firstBytes struct {
	net.Conn
	b []byte
}

const firstBytesKept = 11 // record header (5), handshake header (4), version (2)

func (c *firstBytes) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if keep := firstBytesKept - len(c.b); keep > 0 && n > 0 {
		c.b = append(c.b, p[:min(n, keep)]...)
	}
	return n, err
}

func classifyHTTP(err error, ctx context.Context) (Class, string) {
	if isTimeout(err, ctx) {
		return HTTPTimeout, "the HTTP response did not arrive in time"
	}
	return HTTPError, "the HTTP response is malformed or cut off: " + err.Error()
}
