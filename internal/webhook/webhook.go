// Package webhook delivers alerts to HTTPS endpoints: a JSON body signed
// with HMAC-SHA256 over a timestamp and the body, so that a receiver can
// tell the message came from its mailtls and is not a replay.
//
// The signature header is
//
//	Mailtls-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// A receiver recomputes the HMAC over the timestamp, a dot and the raw
// body, compares it in constant time, and refuses a timestamp older than a
// few minutes (Verify does all of it). Mailtls-Delivery carries the outbox
// message id: a delivery retried after a crash has the same id.
//
// Deliveries connect only to public addresses on port 443 (the SSRF guard
// of package dial, checked on the address being dialled, so DNS rebinding
// does not get around it), follow no redirects, and read at most a few
// KiB of the answer.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
)

// Header names.
const (
	SignatureHeader = "Mailtls-Signature"
	DeliveryHeader  = "Mailtls-Delivery"
	EventHeader     = "Mailtls-Event"
)

// DefaultTolerance is how old a signature's timestamp Verify accepts.
const DefaultTolerance = 5 * time.Minute

// Sign returns the signature header value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: timestamp outside the tolerance")
	ErrMalformed    = errors.New("webhook: malformed signature header")
)

// Verify checks a signature header against the raw body at now: any v1
// value matching (several are allowed, for secret rotation) and a
// timestamp within tolerance (0: DefaultTolerance) of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}

// CheckURL says whether a webhook target is acceptable before it is saved:
// an https URL without credentials, on port 443, whose host is a name or a
// public address. (Where a name points is checked at every delivery.)
func CheckURL(raw string, guard *dial.Guard) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, errors.New("the URL is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case u.Scheme != "https":
		return nil, errors.New("the URL must start with https://")
	case u.User != nil:
		return nil, errors.New("the URL must not carry a user name or password")
	case u.Hostname() == "":
		return nil, errors.New("the URL has no host")
	case u.Port() != "" && u.Port() != "443":
		return nil, errors.New("webhooks are delivered to port 443 only")
	case u.Fragment != "":
		return nil, errors.New("the URL must not have a #fragment")
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && guard != nil {
		if err := guard.Check(netip.AddrPortFrom(ip, 443)); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// Client delivers webhooks. The zero value is not usable: set Guard (or
// Dialer) and use New.
type Client struct {
	hc     *http.Client
	agent  string
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	dialer *dial.Dialer
}

// Options configure a Client.
type Options struct {
	// Dialer connects to the endpoint's addresses; its Guard must be set
	// (dial.NewGuardPorts(dial.WebhookPorts)); tests set Net to reach a
	// loopback receiver.
	Dialer *dial.Dialer
	// Lookup resolves the endpoint's host (default: the system resolver).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Roots are the trusted roots (nil: the system's).
	Roots *x509.CertPool
	// Timeout bounds one delivery (default 10s).
	Timeout   time.Duration
	UserAgent string
}

// MaxAnswer is what a delivery reads of the endpoint's answer.
const MaxAnswer = 4 << 10

// New returns a client.
func New(o Options) (*Client, error) {
	if o.Dialer == nil || o.Dialer.Guard == nil {
		return nil, errors.New("webhook: a guarded dialer is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Lookup == nil {
		o.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if o.UserAgent == "" {
		o.UserAgent = "mailtls-webhook"
	}
	c := &Client{agent: o.UserAgent, lookup: o.Lookup, dialer: o.Dialer}
	tr := &http.Transport{
		DialContext:            c.dial,
		TLSClientConfig:        &tls.Config{RootCAs: o.Roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableKeepAlives:      true, // deliveries are rare; no idle connections to forget
		ForceAttemptHTTP2:      true,
	}
	c.hc = &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// dial resolves the host and connects to its first address that the
// guard allows and that answers.
func (c *Client) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = c.lookup(ctx, host); err != nil {
		return nil, fmt.Errorf("looking up %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	var errs []error
	for _, ip := range ips {
		conn, err := c.dialer.Dial(ctx, host, ip.Unmap(), port)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Delivery is one POST.
type Delivery struct {
	URL    string
	Secret []byte
	ID     string // the outbox message id (Mailtls-Delivery)
	Event  string // alert, resolved, reminder, digest, test (Mailtls-Event)
	Body   []byte // JSON
	At     time.Time
}

// Result is what came back.
type Result struct {
	Status int
	Detail string // "HTTP 204" and the start of the answer's body
}

// Deliver posts one delivery. A 2xx answer is success; any other answer,
// or no answer, is an error (the caller retries with backoff).
func (c *Client) Deliver(ctx context.Context, d Delivery) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.agent)
	req.Header.Set(SignatureHeader, Sign(d.Secret, d.At, d.Body))
	req.Header.Set(DeliveryHeader, d.ID)
	req.Header.Set(EventHeader, d.Event)
	resp, err := c.hc.Do(req)
	if err != nil {
		var b *dial.BlockedError
		if errors.As(err, &b) {
			return Result{Detail: "blocked"}, b
		}
		return Result{}, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	r := Result{Status: resp.StatusCode, Detail: "HTTP " + strconv.Itoa(resp.StatusCode)}
	if a := strings.TrimSpace(strings.ToValidUTF8(string(answer), "�")); a != "" {
		if len(a) > 200 {
			a = a[:200] + "…"
		}
		r.Detail += ": " + a
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return r, fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return r, nil
}
