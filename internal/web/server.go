// Package web is the web checker of `mailtls serve` (the web role): the
// scan page and its JSON API (/api/v1/, described by openapi.yaml). Both
// scan through package scanjob, which runs the same scan, check and report
// code as `mailtls check`; the API returns the CLI's JSON document.
//
// Pages work without JavaScript; one small script of our own streams the
// progress (server-sent events) and adds copy buttons. Everything a remote
// server sent is escaped by html/template. Responses carry a strict
// Content-Security-Policy and no third-party content.
package web

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store"
)

// Server serves the web checker. Set the fields, then use Handler.
type Server struct {
	Jobs *scanjob.Manager
	Log  *slog.Logger
	// TLS says the server is reached over HTTPS (directly or through a
	// proxy): responses then carry Strict-Transport-Security.
	TLS bool
	// TrustedProxies are the addresses whose X-Forwarded-For header names
	// the client (for the per-client limits); empty: none is trusted.
	TrustedProxies []netip.Prefix
	// MaxStreamsPerClient bounds a client's open event streams and waiting
	// progress pages (default 8).
	MaxStreamsPerClient int
	// Heartbeat is the interval of keep-alive comments on event streams
	// (default 15s).
	Heartbeat time.Duration
	// EHLOName is shown on the home page: what the scanner calls itself.
	EHLOName string
	Metrics  *Metrics
	// PublicURL is the origin people use (web.public_url); form posts from
	// it are accepted even when a proxy changes the Host header.
	PublicURL string
	// Monitor serves saved domains (API, unsubscribe links); nil: the
	// checker alone.
	Monitor *Monitoring

	// Accounts turns accounts on (sign-up, login, settings, API tokens);
	// nil serves the anonymous checker alone. Store then holds the users
	// and the sessions.
	Accounts *account.Service
	Store    store.Store
	// SessionIdleTimeout and SessionLifetime end sessions (defaults 12h
	// and 7 days).
	SessionIdleTimeout time.Duration
	SessionLifetime    time.Duration
	// Now is the clock of saved domains' first scans (nil: time.Now).
	Now func() time.Time

	once     sync.Once
	sessions *scs.SessionManager
	handler  http.Handler
	mu       sync.Mutex
	streams  map[string]int // open streams by client key
}

// Metrics of the web role (fixed labels only).
type Metrics struct {
	Streams        prometheus.Gauge   // open event streams and waiting progress pages
	StreamsRefused prometheus.Counter // refused by MaxStreamsPerClient
}

// NewMetrics makes the metrics and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_web_sse_clients",
			Help: "Open progress streams: server-sent event streams and progress pages waiting for the next stage."}),
		StreamsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_web_streams_refused_total",
			Help: "Progress streams refused because the client had too many open (429)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Streams, m.StreamsRefused)
	}
	return m
}

// Defaults.
const (
	DefaultMaxStreamsPerClient = 8
	DefaultHeartbeat           = 15 * time.Second
	maxFormBytes               = 4 << 10 // a form or API request body
	maxWait                    = 60 * time.Second
)

// Handler returns the HTTP handler of the web checker.
func (s *Server) Handler() http.Handler {
	s.once.Do(func() {
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Metrics == nil {
			s.Metrics = NewMetrics(nil)
		}
		if s.MaxStreamsPerClient <= 0 {
			s.MaxStreamsPerClient = DefaultMaxStreamsPerClient
		}
		if s.Heartbeat <= 0 {
			s.Heartbeat = DefaultHeartbeat
		}
		s.streams = map[string]int{}
		mux := http.NewServeMux()
		s.routesAPI(mux)
		s.routesPages(mux)
		var h http.Handler = mux
		// Cross-site form posts are refused on every route (Sec-Fetch-Site /
		// Origin); requests without those headers, such as curl's, pass:
		// they carry no browser's cookies, and the account forms also need
		// the session's CSRF token.
		cop := http.NewCrossOriginProtection()
		if s.PublicURL != "" {
			if err := cop.AddTrustedOrigin(s.PublicURL); err != nil {
				s.Log.Warn("web: public_url is not an origin", "error", err)
			}
		}
		cop.SetDenyHandler(http.HandlerFunc(s.crossOriginRefused))
		if s.Monitor != nil {
			s.routesMonitor(mux)
			// A mail client's one-click unsubscribe is a cross-site POST
			// by design (RFC 8058); the link's id is its credential.
			cop.AddInsecureBypassPattern("POST /unsubscribe/{id}")
		}
		if s.Accounts != nil {
			s.sessions = s.newSessions()
			s.routesAccounts(mux)
			h = s.withSessions(mux)
		}
		s.handler = s.secure(cop.Handler(h))
	})
	return s.handler
}

// secure sets the headers every response carries and recovers panics.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer") // result URLs are private
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		if s.TLS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.Jobs.Metrics().Panics.Inc()
				s.Log.Error("panic in a web handler", "path", r.URL.Path, "panic", p)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// ClientKey is the key of the per-client limits: the IPv4 address, or the
// /64 of an IPv6 address (one subscriber usually holds a whole /64).
func ClientKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// client returns the key of the request's client. X-Forwarded-For counts
// only when the connection comes from a trusted proxy; then the rightmost
// address not belonging to a trusted proxy is the client.
func (s *Server) client(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "unknown"
	}
	ip = ip.Unmap()
	if s.trusted(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			ip = hop.Unmap()
			if !s.trusted(ip) {
				break
			}
		}
	}
	return ClientKey(ip)
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// openStream counts a stream of the client; it returns false when the
// client has too many open. Call the returned function when it ends.
func (s *Server) openStream(client string) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[client] >= s.MaxStreamsPerClient {
		s.Metrics.StreamsRefused.Inc()
		return nil, false
	}
	s.streams[client]++
	s.Metrics.Streams.Inc()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.Metrics.Streams.Dec()
		if s.streams[client]--; s.streams[client] <= 0 {
			delete(s.streams, client)
		}
	}, true
}

// ScannerOptions are what the web checker's scans go through: the
// resolver, the dialer with the SSRF guard, the roots senders trust, the
// clock, the EHLO name and the wait of each SMTP phase.
type ScannerOptions struct {
	Resolver    scan.Resolver
	Dialer      *dial.Dialer
	Roots       *x509.CertPool // nil: the system roots
	Now         func() time.Time
	EHLO        string
	SMTPTimeout time.Duration
}

// NewScanner is the scanner of the web checker: the CLI's observers
// (resolve, fetch, smtpprobe) behind the guarded dialer.
func NewScanner(o ScannerOptions) *scan.Scanner {
	w := o.SMTPTimeout
	return &scan.Scanner{
		Resolver: o.Resolver,
		Fetcher:  &fetch.Fetcher{Dialer: o.Dialer, Roots: o.Roots, Now: o.Now},
		Dialer:   o.Dialer,
		Now:      o.Now,
		Prober: &smtpprobe.Prober{Dialer: o.Dialer, Roots: o.Roots, Now: o.Now, EHLO: o.EHLO,
			ConnectTimeout: w, BannerTimeout: w, CommandTimeout: w, HandshakeTimeout: w},
	}
}

// NewScanFunc returns the scan the jobs run: the CLI's scan (scan.Scanner),
// judgement (check.Evaluate) and JSON document (report.NewDocument). The
// scanner is copied for each scan; its Prober is left out when smtp is
// false. The document carries neither the input nor notes about it, since
// a scan may be joined by other clients.
func NewScanFunc(base *scan.Scanner, now func() time.Time) scanjob.ScanFunc {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, domain string, smtp bool, progress func(scan.Step)) *report.Document {
		sc := *base
		sc.Progress = progress
		if !smtp {
			sc.Prober = nil
		}
		o := sc.Scan(ctx, domain)
		r := check.Evaluate(o, now())
		return report.NewDocument(r, domain)
	}
}
