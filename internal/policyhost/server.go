package policyhost

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/mtasts"
)

// CertSource supplies certificates the server does not hold statically
// (ACME); nil means static certificates only.
type CertSource interface {
	// GetCertificate returns the certificate for hello's server name and
	// answers TLS-ALPN-01 challenges. ctx ends with the handshake's
	// deadline: a certificate that is not ready by then is refused, so
	// that no handshake waits longer than any other.
	GetCertificate(ctx context.Context, hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// HTTPHandler answers ACME HTTP-01 challenges and passes everything
	// else to next.
	HTTPHandler(next http.Handler) http.Handler
}

// Errors a CertSource returns for a certificate it cannot give yet; the
// server counts each refusal by its reason.
var (
	// ErrCertPending: an on-demand certificate is being obtained and was
	// not ready within the handshake.
	ErrCertPending = errors.New("policyhost: the certificate is being obtained; retry later")
	// ErrCertFailed: obtaining an on-demand certificate failed recently;
	// it is retried later, not at every handshake.
	ErrCertFailed = errors.New("policyhost: obtaining the certificate failed recently; retry later")
)

// Limits bound what clients may take of the server. A count or rate of 0
// or less is no limit; a zero timeout or header size is net/http's
// default. The composition root fills them from the configuration.
type Limits struct {
	MaxConns          int     // open connections in all
	MaxConnsPerIP     int     // open connections per client IP
	RequestsPerSecond float64 // per client IP
	Burst             int
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// Server serves the policies over HTTPS with net/http (HTTP/1.1 and
// HTTP/2). Set Sites before serving; Swap replaces them without dropping
// connections.
type Server struct {
	Log     *slog.Logger
	Certs   CertSource
	Limits  Limits
	Metrics *Metrics

	sites   atomic.Pointer[Sites]
	limiter *ipLimiter
	mu      sync.Mutex
	servers []*http.Server
	closed  bool
}

// NewServer makes a server with limits and a metrics registry.
func NewServer(log *slog.Logger, limits Limits, certs CertSource, m *Metrics) *Server {
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	s := &Server{Log: log, Certs: certs, Limits: limits, Metrics: m}
	s.limiter = newIPLimiter(limits.MaxConns, limits.MaxConnsPerIP, limits.RequestsPerSecond, limits.Burst)
	return s
}

// Swap installs a new set of sites; requests in flight finish with the old
// one.
func (s *Server) Swap(sites *Sites) {
	s.sites.Store(sites)
	s.Metrics.Domains.Set(float64(sites.Len()))
}

// Sites returns the sites being served.
func (s *Server) Sites() *Sites { return s.sites.Load() }

// Application protocols (RFC 7301). acme-tls/1 is RFC 8737's.
const (
	protoH2       = "h2"
	protoHTTP11   = "http/1.1"
	protoACMETLS1 = "acme-tls/1"
)

var (
	httpProtos = []string{protoH2, protoHTTP11}
	errNoACME  = errors.New("policyhost: acme-tls/1 offered, but ACME is off")
	errNoCert  = errors.New("policyhost: no certificate for this name")
)

// TLSConfig is the HTTPS configuration: TLS 1.2 or newer (RFC 8461 §7.2),
// the certificate chosen by SNI among configured hosts only, HTTP/2 or
// HTTP/1.1 by ALPN.
//
// A client whose ALPN offer has nothing in common with ours (only
// http/1.0, say) is served without ALPN rather than refused: RFC 7301
// §3.2 would have the handshake fail, but such a sender reads an HTTP/1.x
// answer, and failing it only loses the policy. acme-tls/1 alone is a
// TLS-ALPN-01 validation (RFC 8737 §3): answered only when ACME is on,
// and net/http then closes the connection without serving anything on it.
func (s *Server) TLSConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: httpProtos, GetCertificate: s.getCertificate}
	noALPN := base.Clone()
	noALPN.NextProtos = nil
	var acme *tls.Config
	if s.Certs != nil {
		acme = base.Clone()
		acme.NextProtos = []string{protoACMETLS1}
	}
	c := base.Clone()
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		offered := hello.SupportedProtos
		switch {
		case len(offered) == 1 && offered[0] == protoACMETLS1:
			if acme == nil {
				s.refused("alpn")
				return nil, errNoACME
			}
			return acme, nil
		case len(offered) > 0 && !slices.ContainsFunc(offered, func(p string) bool { return slices.Contains(httpProtos, p) }):
			return noALPN, nil
		}
		return nil, nil
	}
	return c
}

// getCertificate picks the certificate by SNI. For a name that is not
// served, (nil, nil) makes crypto/tls answer with the unrecognized_name
// alert (RFC 6066 §3); an error would send internal_error, which reads as
// a server fault in a sender's logs.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	site := s.sites.Load().Lookup(hello.ServerName)
	switch {
	case site == nil:
		s.refused("unknown_name")
		return nil, nil
	case site.Static != nil:
		return site.Static, nil
	case s.Certs == nil:
		s.refused("no_certificate")
		return nil, nil
	}
	ctx, cancel := context.WithDeadline(hello.Context(), s.handshakeDeadline(hello.Conn))
	defer cancel()
	cert, err := s.Certs.GetCertificate(ctx, hello)
	switch {
	case errors.Is(err, ErrCertPending):
		s.refused("on_demand_pending")
	case errors.Is(err, ErrCertFailed):
		s.refused("on_demand_failed")
	case err != nil:
		s.refused("no_certificate")
	case cert == nil || len(cert.Certificate) == 0:
		s.refused("no_certificate")
		err = errNoCert
	default:
		return cert, nil
	}
	return nil, err
}

func (s *Server) refused(reason string) { s.Metrics.HandshakesRefused.WithLabelValues(reason).Inc() }

// handshakeTimeout is net/http's: the shortest of the read-header, read
// and write timeouts, set as the connection's deadline for the handshake.
func (s *Server) handshakeTimeout() time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{s.Limits.ReadHeaderTimeout, s.Limits.ReadTimeout, s.Limits.WriteTimeout} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	if d == 0 {
		d = 10 * time.Second
	}
	return d
}

// handshakeDeadline is when the handshake on c times out: its deadline
// starts when the connection is accepted.
func (s *Server) handshakeDeadline(c net.Conn) time.Time {
	start := time.Now()
	if lc, ok := c.(*limitConn); ok {
		start = lc.accepted
	}
	return start.Add(s.handshakeTimeout())
}

// ServeHTTP answers GET and HEAD of /.well-known/mta-sts.txt for configured
// hosts; anything else gets a bare 404 (or 405, 421, 429). Nothing in a
// response reflects the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.Metrics.Panics.Inc()
			s.Log.Error("panic serving a request", "panic", fmt.Sprint(p))
			http.Error(w, "", http.StatusInternalServerError)
		}
	}()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if !s.limiter.allow(remoteIP(r.RemoteAddr)) {
		s.reply(w, http.StatusTooManyRequests, "rate_limited")
		return
	}
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	// One snapshot per request: a reload in between must not mix two.
	sites := s.sites.Load()
	site := sites.Lookup(host)
	switch {
	case site == nil:
		s.reply(w, http.StatusNotFound, "unknown_host")
		return
	case r.TLS != nil && !strings.EqualFold(strings.TrimSuffix(r.TLS.ServerName, "."), site.Host):
		s.reply(w, http.StatusMisdirectedRequest, "misdirected")
		return
	case r.URL.Path != mtasts.PolicyPath:
		s.reply(w, http.StatusNotFound, "not_found")
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.Set("Allow", "GET, HEAD")
		s.reply(w, http.StatusMethodNotAllowed, "method_not_allowed")
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(site.Body)))
	if cc := sites.CacheControl; cc != "" {
		h.Set("Cache-Control", cc)
	}
	w.WriteHeader(http.StatusOK)
	s.Metrics.Requests.WithLabelValues("policy").Inc()
	if r.Method == http.MethodGet {
		w.Write(site.Body)
	}
}

// reply sends a bodiless status.
func (s *Server) reply(w http.ResponseWriter, code int, result string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
	s.Metrics.Requests.WithLabelValues(result).Inc()
}

// httpHandler is the plain-HTTP side: ACME HTTP-01 challenges, and 404
// for everything else — the policy path is never redirected (RFC 8461
// §3.3: senders do not follow redirects and never use HTTP).
func (s *Server) httpHandler() http.Handler {
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.limiter.allow(remoteIP(r.RemoteAddr)) {
			s.reply(w, http.StatusTooManyRequests, "rate_limited")
			return
		}
		s.reply(w, http.StatusNotFound, "plain_http")
	})
	if s.Certs == nil {
		return notFound
	}
	return s.Certs.HTTPHandler(notFound)
}

// ServeHTTPS serves the policies on l (TLS is added here).
func (s *Server) ServeHTTPS(l net.Listener) error {
	return s.serve(s.newHTTPServer(s), tls.NewListener(s.limiter.wrap(l, s.Metrics), s.TLSConfig()))
}

// ServePlainHTTP serves the ACME HTTP-01 side on l.
func (s *Server) ServePlainHTTP(l net.Listener) error {
	return s.serve(s.newHTTPServer(s.httpHandler()), s.limiter.wrap(l, s.Metrics))
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	l := s.Limits
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
	}
}

// serve records srv for Shutdown and serves l; after Shutdown it closes l
// and returns http.ErrServerClosed.
func (s *Server) serve(srv *http.Server, l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	return srv.Serve(l)
}

// Shutdown stops accepting connections and waits for requests in flight,
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.mu.Unlock()
	var first error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func remoteIP(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ipLimiter bounds connections, in all and per client IP, and requests
// per client IP. The per-IP bound alone does not bound the total: an IPv6
// /64 has 2^64 source addresses.
type ipLimiter struct {
	maxConns      int // 0 or less: no limit
	maxConnsPerIP int // 0 or less: no limit
	rps           rate.Limit
	burst         int
	mu            sync.Mutex
	total         int
	conns         map[netip.Addr]int
	buckets       map[netip.Addr]*bucket
	pruned        time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const (
	// maxTracked bounds the rate-limit table; beyond it, idle entries go
	// first.
	maxTracked = 100000
	// bucketIdle is how long an idle client's bucket is kept; it is full
	// again long before.
	bucketIdle = 5 * time.Minute
)

func newIPLimiter(maxConns, maxConnsPerIP int, rps float64, burst int) *ipLimiter {
	return &ipLimiter{maxConns: maxConns, maxConnsPerIP: maxConnsPerIP, rps: rate.Limit(rps), burst: burst,
		conns: map[netip.Addr]int{}, buckets: map[netip.Addr]*bucket{}, pruned: time.Now()}
}

func (l *ipLimiter) allow(ip netip.Addr) bool {
	if l.rps <= 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	// Idle buckets are dropped on the way, about once a minute (no
	// goroutine of its own to stop).
	if now.Sub(l.pruned) > time.Minute {
		l.prune(now, bucketIdle)
	}
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxTracked {
			// Bounded memory: drop the idle entries, or all of them.
			l.prune(now, time.Minute)
			if len(l.buckets) >= maxTracked {
				clear(l.buckets)
			}
		}
		b = &bucket{lim: rate.NewLimiter(l.rps, l.burst)}
		l.buckets[ip] = b
	}
	b.seen = now
	l.mu.Unlock()
	return b.lim.AllowN(now, 1)
}

// prune drops the buckets idle for longer than idle; the caller holds mu.
func (l *ipLimiter) prune(now time.Time, idle time.Duration) {
	for ip, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, ip)
		}
	}
	l.pruned = now
}

// admit takes a connection slot for ip, or says which limit refuses it.
func (l *ipLimiter) admit(ip netip.Addr) (reason string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxConns > 0 && l.total >= l.maxConns:
		return "global", false
	case l.maxConnsPerIP > 0 && l.conns[ip] >= l.maxConnsPerIP:
		return "per_ip", false
	}
	l.total++
	l.conns[ip]++
	return "", true
}

func (l *ipLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	l.total--
	if l.conns[ip]--; l.conns[ip] <= 0 {
		delete(l.conns, ip)
	}
	l.mu.Unlock()
}

// wrap applies the connection limits to a listener.
func (l *ipLimiter) wrap(ln net.Listener, m *Metrics) net.Listener {
	return &limitListener{Listener: ln, l: l, m: m}
}

type limitListener struct {
	net.Listener
	l *ipLimiter
	m *Metrics
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr().String())
		if reason, ok := ll.l.admit(ip); !ok {
			ll.m.Rejected.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		return &limitConn{Conn: c, accepted: time.Now(), release: func() { ll.l.release(ip) }}, nil
	}
}

type limitConn struct {
	net.Conn
	accepted time.Time
	once     sync.Once
	release  func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Metrics are the Prometheus metrics of the host role. Labels take only
// fixed values, never anything from a request.
type Metrics struct {
	Requests          *prometheus.CounterVec
	Rejected          *prometheus.CounterVec
	HandshakesRefused *prometheus.CounterVec
	Domains           prometheus.Gauge
	Reloads           *prometheus.CounterVec
	Certs             *prometheus.CounterVec
	Panics            prometheus.Counter
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_requests_total",
			Help: "Requests to the policy host by result: policy, unknown_host, not_found, misdirected, method_not_allowed, rate_limited, plain_http."}, []string{"result"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_connections_rejected_total",
			Help: "Connections closed at once by limit: per_ip (max_conns_per_ip) or global (max_conns)."}, []string{"limit"}),
		HandshakesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_handshakes_refused_total",
			Help: "TLS handshakes refused by reason: unknown_name (no such host configured), no_certificate (not obtained yet), on_demand_pending (being obtained), on_demand_failed (failed recently), alpn (acme-tls/1 with ACME off)."}, []string{"reason"}),
		Domains: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_host_domains", Help: "Policy domains being served."}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_config_reloads_total",
			Help: "Configuration reloads by result: ok or error (the old configuration keeps serving)."}, []string{"result"}),
		Certs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_certificate_events_total",
			Help: "ACME certificate events: obtained, renewed, failed."}, []string{"event"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_panics_total", Help: "Panics recovered in server goroutines."}),
	}
	reg.MustRegister(m.Requests, m.Rejected, m.HandshakesRefused, m.Domains, m.Reloads, m.Certs, m.Panics)
	return m
}
