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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/fetch"
)

// CertSource supplies certificates the server does not hold statically
// (ACME); nil means static certificates only.
type CertSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// HTTPHandler answers ACME HTTP-01 challenges and passes everything
	// else to next.
	HTTPHandler(next http.Handler) http.Handler
}

// Server serves the policies. Set Sites before serving; Swap replaces them
// without dropping connections.
type Server struct {
	Log     *slog.Logger
	Certs   CertSource
	Limits  config.Limits
	Metrics *Metrics

	sites   atomic.Pointer[Sites]
	limiter *ipLimiter
	mu      sync.Mutex
	servers []*http.Server
	closed  bool

	// The fast path (fast.go).
	closing      atomic.Bool
	fast         map[*fastConn]struct{} // under mu
	fastLns      []fastListener         // under mu
	fastWG       sync.WaitGroup
	date         atomic.Pointer[httpDate]
	policyServed prometheus.Counter
	rateLimited  prometheus.Counter
}

// NewServer makes a server with limits and a metrics registry.
func NewServer(log *slog.Logger, limits config.Limits, certs CertSource, m *Metrics) *Server {
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	s := &Server{Log: log, Certs: certs, Limits: limits, Metrics: m, fast: map[*fastConn]struct{}{},
		// Resolved once: WithLabelValues hashes the label on every call.
		policyServed: m.Requests.WithLabelValues("policy"), rateLimited: m.Requests.WithLabelValues("rate_limited")}
	s.limiter = newIPLimiter(limits.MaxConnsPerIP, limits.RequestsPerSecond, limits.Burst)
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

// errUnknownHost fails handshakes for names that are not configured.
var errUnknownHost = errors.New("policyhost: no certificate for this name")

// TLSConfig is the HTTPS configuration: TLS 1.2 or newer (RFC 8461 §7.2),
// the certificate chosen by SNI among configured hosts only.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1", "acme-tls/1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			// For a name that is not served, (nil, nil) makes crypto/tls
			// answer with the unrecognized_name alert (RFC 6066 §3); an
			// error would send internal_error, which reads as a server
			// fault in a sender's logs.
			site := s.sites.Load().Lookup(hello.ServerName)
			if site == nil {
				return nil, nil
			}
			if site.Static != nil {
				return site.Static, nil
			}
			if s.Certs == nil {
				return nil, nil
			}
			return s.Certs.GetCertificate(hello)
		},
	}
}

// ServeHTTP answers GET and HEAD of /.well-known/mta-sts.txt for configured
// hosts; anything else gets a bare 404 (or 405, 421, 429). Nothing in a
// response reflects the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
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
	st := requestTLS(r)
	switch {
	case site == nil:
		s.reply(w, http.StatusNotFound, "unknown_host")
		return
	case st != nil && !strings.EqualFold(strings.TrimSuffix(st.ServerName, "."), site.Host):
		s.reply(w, http.StatusMisdirectedRequest, "misdirected")
		return
	case r.URL.Path != fetch.Path:
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

// ServeHTTPS serves the policies on l (TLS is added here): the fast path
// answers plain policy requests and hands everything else to net/http.
func (s *Server) ServeHTTPS(l net.Listener) error {
	tl := tls.NewListener(s.limiter.wrap(l, s.Metrics), s.TLSConfig())
	q := newConnQueue(l.Addr())
	srv := s.newHTTPServer(s)
	srv.ConnContext = connContext
	if !s.register(srv, tl, &fastListener{tl, q}) {
		return http.ErrServerClosed
	}
	go srv.Serve(q)
	return s.acceptFast(tl, q)
}

// ServePlainHTTP serves the ACME HTTP-01 side on l.
func (s *Server) ServePlainHTTP(l net.Listener) error {
	return s.serve(s.newHTTPServer(s.httpHandler()), s.limiter.wrap(l, s.Metrics))
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	l := s.Limits
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		ReadTimeout:       l.ReadTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
	}
}

func (s *Server) serve(srv *http.Server, l net.Listener) error {
	if !s.register(srv, l, nil) {
		return http.ErrServerClosed
	}
	return srv.Serve(l)
}

// register records a server (and a fast-path listener) for Shutdown; after
// Shutdown it closes l and reports false.
func (s *Server) register(srv *http.Server, l net.Listener, fl *fastListener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return false
	}
	s.servers = append(s.servers, srv)
	if fl != nil {
		s.fastLns = append(s.fastLns, *fl)
	}
	return true
}

// Shutdown stops accepting connections and waits for requests in flight,
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.closing.Store(true)
	servers, lns := s.servers, s.fastLns
	conns := make([]*fastConn, 0, len(s.fast))
	for fc := range s.fast {
		conns = append(conns, fc)
	}
	s.mu.Unlock()
	for _, fl := range lns {
		fl.l.Close()
		fl.q.Close()
	}
	for _, fc := range conns {
		fc.wake()
	}
	var first error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	done := make(chan struct{})
	go func() { s.fastWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, fc := range conns {
			fc.c.Close()
		}
		if first == nil {
			first = ctx.Err()
		}
	}
	s.limiter.stop()
	return first
}

func remoteIP(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ipLimiter bounds connections and requests per client IP.
type ipLimiter struct {
	maxConns int
	rps      rate.Limit
	burst    int
	mu       sync.Mutex
	conns    map[netip.Addr]int
	buckets  map[netip.Addr]*bucket
	done     chan struct{}
	once     sync.Once
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxTracked bounds the rate-limit table; beyond it, idle entries go first.
const maxTracked = 100000

func newIPLimiter(maxConns int, rps float64, burst int) *ipLimiter {
	l := &ipLimiter{maxConns: maxConns, rps: rate.Limit(rps), burst: burst,
		conns: map[netip.Addr]int{}, buckets: map[netip.Addr]*bucket{}, done: make(chan struct{})}
	go l.janitor()
	return l
}

func (l *ipLimiter) janitor() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			l.mu.Lock()
			for ip, b := range l.buckets {
				if now.Sub(b.seen) > 5*time.Minute {
					delete(l.buckets, ip)
				}
			}
			l.mu.Unlock()
		}
	}
}

func (l *ipLimiter) stop() { l.once.Do(func() { close(l.done) }) }

func (l *ipLimiter) allow(ip netip.Addr) bool {
	if l.rps <= 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxTracked {
			// Bounded memory: drop the idle entries, or all of them.
			for k, v := range l.buckets {
				if now.Sub(v.seen) > time.Minute {
					delete(l.buckets, k)
				}
			}
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

// wrap limits the connections per client IP on a listener.
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
		l := ll.l
		l.mu.Lock()
		if l.maxConns > 0 && l.conns[ip] >= l.maxConns {
			l.mu.Unlock()
			ll.m.Rejected.Inc()
			c.Close()
			continue
		}
		l.conns[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.conns[ip]--; l.conns[ip] <= 0 {
				delete(l.conns, ip)
			}
			l.mu.Unlock()
		}}, nil
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Metrics are the Prometheus metrics of the host role. Labels take only
// fixed values, never anything from a request.
type Metrics struct {
	Requests *prometheus.CounterVec
	Rejected prometheus.Counter
	Domains  prometheus.Gauge
	Reloads  *prometheus.CounterVec
	Certs    *prometheus.CounterVec
	Panics   prometheus.Counter
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_requests_total",
			Help: "Requests to the policy host by result: policy, unknown_host, not_found, misdirected, method_not_allowed, rate_limited, plain_http."}, []string{"result"}),
		Rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_host_connections_rejected_total",
			Help: "Connections closed at once because the client IP had too many open."}),
		Domains: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_host_domains", Help: "Policy domains being served."}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_config_reloads_total",
			Help: "Configuration reloads by result: ok or error (the old configuration keeps serving)."}, []string{"result"}),
		Certs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_certificate_events_total",
			Help: "ACME certificate events: obtained, renewed, failed."}, []string{"event"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtls_panics_total", Help: "Panics recovered in server goroutines."}),
	}
	reg.MustRegister(m.Requests, m.Rejected, m.Domains, m.Reloads, m.Certs, m.Panics)
	return m
}
