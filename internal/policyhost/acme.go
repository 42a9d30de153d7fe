package policyhost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Challenge types (RFC 8555 §8.3, RFC 8737).
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// storageCloseWait bounds how long Close waits for certmagic to let go of
// the storage (jobs end quickly once their context is canceled).
const storageCloseWait = 15 * time.Second

// On-demand issuance runs apart from the handshakes that wait for it.
const (
	// onDemandObtainTimeout bounds one attempt to obtain a certificate
	// (certmagic allows 180 s to a handshake; here no handshake waits
	// that long, so the attempt may finish for the next one).
	onDemandObtainTimeout = 3 * time.Minute
	// onDemandRetryAfter is the first wait after a failed attempt, during
	// which handshakes for the name are refused at once; it doubles with
	// each failure in a row, up to onDemandRetryMax.
	onDemandRetryAfter = time.Minute
	onDemandRetryMax   = time.Hour
)

// ACMEOptions configures NewACME.
type ACMEOptions struct {
	CA    string // directory URL; required
	Email string // account contact; may be empty
	// Challenges are the challenge types to answer, ChallengeHTTP01 and
	// ChallengeTLSALPN01; empty means both. A type whose port (below) is
	// zero is dropped: nothing of ours would answer it.
	Challenges []string
	// TrustedRoots verify the ACME server's HTTPS; nil means the system
	// roots.
	TrustedRoots *x509.CertPool
	// Storage is the state folder; the account, keys and certificates go
	// to Storage/certmagic. Required unless CertStorage is set.
	Storage string
	// CertStorage, when set, is where certmagic keeps the account, keys,
	// certificates, challenge tokens and locks instead of Storage: one
	// shared by several instances (certstorage's PostgreSQL) makes them
	// share certificates and order each once. It must also be a
	// certmagic.TryLocker. NewACME's ACME does not close it.
	CertStorage certmagic.Storage
	// HTTPPort and TLSPort are the ports of our own plain-HTTP and HTTPS
	// listeners, where the Server answers challenges through HTTPHandler
	// and GetCertificate. ListenHost is those listeners' host ("" for all
	// addresses; a listener on 127.0.0.1 wants "127.0.0.1", so that
	// certmagic's probe never tries the wildcard address). See NewACME for
	// why certmagic needs them.
	HTTPPort, TLSPort int
	ListenHost        string
	// RenewalWindowRatio is the part of a certificate's lifetime, at its
	// end, in which it is renewed; 0 means certmagic's default (1/3).
	RenewalWindowRatio float64
	// RenewCheckInterval is how often certificates are checked for
	// renewal; 0 means certmagic's default (10 minutes).
	RenewCheckInterval time.Duration
	Log                *slog.Logger // nil discards
	Metrics            *Metrics     // Certs counts obtained, renewed, failed
	// Resolvers, "host" or "host:port", are used (the first one) to look
	// up the ACME server's name; none means the system's. certmagic makes
	// no other lookups with HTTP-01 and TLS-ALPN-01.
	Resolvers []string
}

// ACME is the CertSource of hosts without a static certificate:
// certificates from an ACME CA through certmagic, obtained when Sync
// first sees a host, or at the first handshake for on_demand hosts, and
// renewed in the background. It only ever holds certificates for the
// hosts of the last Sync. It is safe for concurrent use.
type ACME struct {
	log     *slog.Logger
	metrics *Metrics
	storage *closingStorage
	cache   *certmagic.Cache
	// Two configurations over one cache and storage, because certmagic
	// defers all management to handshakes when OnDemand is set.
	managed  *certmagic.Config
	onDemand *certmagic.Config
	issuer   *certmagic.ACMEIssuer // the managed one's; answers HTTP-01

	hosts atomic.Pointer[map[string]bool] // host → on demand

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	running map[string]context.CancelFunc // managed hosts: stops their obtain retries
	pending map[string]*obtainment        // on-demand hosts being obtained
	failed  map[string]failure            // on-demand hosts whose last attempt failed
	wg      sync.WaitGroup                // the obtainments
}

// obtainment is one attempt to get an on-demand certificate, which every
// handshake for the name waits for (up to its own deadline).
type obtainment struct {
	done chan struct{}
	err  error // set before done is closed
}

// failure is when an on-demand name may be tried again.
type failure struct {
	until time.Time
	n     int // failures in a row
}

var (
	errNotOnDemand   = errors.New("policyhost: not an on_demand host")
	errNotACMEHost   = errors.New("policyhost: no ACME certificate for this name")
	errNoChallenge   = errors.New("policyhost: acme: no challenge type can be answered (check the listeners and acme.challenges)")
	errStorageClosed = errors.New("policyhost: acme: storage closed")
	challengeTypes   = []string{ChallengeHTTP01, ChallengeTLSALPN01}
)

// NewACME sets up certificate management; nothing is obtained before Sync.
//
// certmagic v0.25.6 answers HTTP-01 and TLS-ALPN-01 by first trying to bind
// ListenHost:port itself (the AltHTTPPort and AltTLSALPNPort of its
// issuer). When our listener holds that address the bind fails with
// "address in use", and certmagic relies on whatever listens there: our
// Server, which passes challenge requests to HTTPHandler and acme-tls/1
// handshakes to GetCertificate. So the ports must be those of our
// listeners, and they must be listening before Sync; a challenge type
// without a port of ours is not used at all, since certmagic would then
// bind :80 or :443 on its own.
func NewACME(o ACMEOptions) (*ACME, error) {
	if o.CA == "" {
		return nil, errors.New("policyhost: acme: no CA directory URL")
	}
	storage := o.CertStorage
	if storage == nil {
		if o.Storage == "" {
			return nil, errors.New("policyhost: acme: no storage folder")
		}
		storage = &certmagic.FileStorage{Path: filepath.Join(o.Storage, "certmagic")}
	}
	if _, ok := storage.(certmagic.TryLocker); !ok {
		return nil, fmt.Errorf("policyhost: acme: storage %T cannot TryLock", storage)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	challenges := o.Challenges
	if len(challenges) == 0 {
		challenges = challengeTypes
	}
	use := map[string]bool{}
	for _, c := range challenges {
		if !slices.Contains(challengeTypes, c) {
			return nil, fmt.Errorf("policyhost: acme: unknown challenge type %q", c)
		}
		use[c] = true
	}
	for c, port := range map[string]int{ChallengeHTTP01: o.HTTPPort, ChallengeTLSALPN01: o.TLSPort} {
		if use[c] && (port < 1 || port > 65535) {
			log.Warn("acme: not using a challenge type: no listener of ours answers it", "challenge", c)
			use[c] = false
		}
	}
	if !use[ChallengeHTTP01] && !use[ChallengeTLSALPN01] {
		return nil, errNoChallenge
	}
	m := o.Metrics
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	resolver := ""
	if len(o.Resolvers) > 0 {
		resolver = o.Resolvers[0]
		if _, _, err := net.SplitHostPort(resolver); err != nil {
			resolver = net.JoinHostPort(resolver, "53")
		}
	}

	a := &ACME{log: log, metrics: m, running: map[string]context.CancelFunc{}, pending: map[string]*obtainment{}, failed: map[string]failure{}}
	a.hosts.Store(&map[string]bool{})
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.storage = &closingStorage{fs: storage, held: map[string]int{}}
	zl := newZap(log.Handler())

	// A cache of our own (not certmagic's default one), so that nothing
	// is shared with other instances in the process, and Close can stop
	// its maintenance goroutine.
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   a.configFor,
		RenewCheckInterval: o.RenewCheckInterval,
		Logger:             zl,
	})
	base := certmagic.Config{
		RenewalWindowRatio: o.RenewalWindowRatio,
		OnEvent:            a.onEvent,
		ShouldEmitFunc:     func(event string) bool { return event == "cert_obtained" || event == "cert_failed" },
		Storage:            a.storage,
		Logger:             zl,
		// OCSP stapling and ARI (ACME Renewal Information, the CA telling
		// when to renew) stay on, certmagic's defaults. Neither reaches
		// outside the ACME server in the lab: Pebble serves ARI and its
		// certificates name no OCSP responder, so there is nothing to
		// fetch (Let's Encrypt's have none since 2025 either). ARI lets
		// a CA bring renewals forward after a mass revocation.
	}
	template := certmagic.ACMEIssuer{
		CA:                      o.CA,
		Email:                   o.Email,
		Agreed:                  true, // configuring a CA is accepting its terms
		DisableHTTPChallenge:    !use[ChallengeHTTP01],
		DisableTLSALPNChallenge: !use[ChallengeTLSALPN01],
		ListenHost:              o.ListenHost,
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSPort,
		TrustedRoots:            o.TrustedRoots,
		Resolver:                resolver,
		Logger:                  zl,
		NewAccountFunc:          dropNonAddressContacts,
	}
	a.managed, a.issuer = newCertmagicConfig(a.cache, base, template)
	base.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: a.decide}
	a.onDemand, _ = newCertmagicConfig(a.cache, base, template)
	return a, nil
}

// dropNonAddressContacts removes from an account about to be registered
// every contact that is not a mail address. Without an acme.email,
// certmagic (v0.25.6) keeps the account in a storage folder named
// "default"; when several certificates are obtained at once, one of them
// can read that folder while another is still writing it and take
// "default" for the account's address, and the CA then refuses
// "mailto:default" (invalidContact), delaying that certificate by a
// minute of backoff. A contact-less account is what was configured.
func dropNonAddressContacts(_ context.Context, _ *certmagic.ACMEIssuer, acct acme.Account) (acme.Account, error) {
	var kept []string
	for _, c := range acct.Contact {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok || strings.Contains(addr, "@") {
			kept = append(kept, c)
		}
	}
	acct.Contact = kept
	return acct, nil
}

// newCertmagicConfig makes a config over cache with one ACME issuer.
func newCertmagicConfig(cache *certmagic.Cache, base certmagic.Config, template certmagic.ACMEIssuer) (*certmagic.Config, *certmagic.ACMEIssuer) {
	cfg := certmagic.New(cache, base)
	iss := certmagic.NewACMEIssuer(cfg, template)
	cfg.Issuers = []certmagic.Issuer{iss}
	return cfg, iss
}

// configFor tells certmagic's maintenance which configuration a cached
// certificate belongs to; on-demand ones are renewed at handshakes.
func (a *ACME) configFor(cert certmagic.Certificate) (*certmagic.Config, error) {
	hosts := *a.hosts.Load()
	for _, n := range cert.Names {
		if hosts[n] {
			return a.onDemand, nil
		}
	}
	return a.managed, nil
}

// Sync makes the ACME sites of sites (Static == nil) the ones with
// certificates: new hosts that are not on_demand are managed at once (in
// the background: a failure is logged and retried with backoff, and holds
// up no other host), on_demand hosts wait for their first handshake, and
// hosts no longer there are dropped from memory and maintenance (their
// files stay in storage). Call it after every reload. Management outlives
// ctx (it runs until the host goes or Close); a ctx already done makes
// Sync do nothing.
func (a *ACME) Sync(ctx context.Context, sites *Sites) {
	hosts := map[string]bool{}
	if sites == nil {
		sites = &Sites{}
	}
	for _, s := range sites.All() {
		if s.Static == nil {
			hosts[s.Host] = s.OnDemand
		}
	}
	a.SyncHosts(ctx, hosts)
}

// SyncHosts is Sync for host names that are not policy sites (the web
// checker's public name): hosts maps each name to whether it is on demand.
func (a *ACME) SyncHosts(ctx context.Context, hosts map[string]bool) {
	if ctx.Err() != nil {
		return
	}
	next := map[string]bool{}
	for h, onDemand := range hosts {
		next[strings.TrimSuffix(strings.ToLower(h), ".")] = onDemand
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	prev := *a.hosts.Load()
	a.hosts.Store(&next)

	for host, stop := range a.running {
		if onDemand, ok := next[host]; !ok || onDemand {
			stop()
			delete(a.running, host)
		}
	}
	var gone []certmagic.SubjectIssuer
	for host := range prev {
		if _, ok := next[host]; !ok {
			gone = append(gone, certmagic.SubjectIssuer{Subject: host})
		}
	}
	if len(gone) > 0 {
		a.cache.RemoveManaged(gone)
	}
	for host := range a.failed {
		if !next[host] {
			delete(a.failed, host)
		}
	}
	var start []string
	onDemand := 0
	for host, od := range next {
		switch {
		case od:
			onDemand++
		case a.running[host] == nil:
			start = append(start, host)
		}
	}
	sort.Strings(start)
	for _, host := range start {
		// One context per host, so that dropping it stops its retries.
		mctx, stop := context.WithCancel(a.ctx)
		a.running[host] = stop
		if err := a.managed.ManageAsync(mctx, []string{host}); err != nil {
			a.log.Error("acme: cannot manage the certificate", "host", host, "error", err)
		}
	}
	a.log.Info("acme: hosts in sync", "managed", len(a.running), "on_demand", onDemand, "added", len(start), "removed", len(gone))
}

// decide is the on-demand DecisionFunc: only the on_demand hosts of the
// last Sync get a certificate at a handshake, never an arbitrary SNI.
func (a *ACME) decide(_ context.Context, name string) error {
	if (*a.hosts.Load())[name] {
		return nil
	}
	a.log.Warn("acme: refused an on-demand certificate", "host", name)
	return errNotOnDemand
}

// GetCertificate returns the certificate for the SNI of hello, answering
// TLS-ALPN-01 challenges too. Hosts of the last Sync only. An on_demand
// host without a certificate starts one attempt to obtain it, shared by
// every handshake for the name; each waits until its ctx ends
// (ErrCertPending), so that a slow or unreachable CA holds no connection
// longer than a handshake may last. After a failed attempt the name is
// refused at once (ErrCertFailed) until its retry time.
func (a *ACME) GetCertificate(ctx context.Context, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	onDemand, ok := (*a.hosts.Load())[name]
	switch {
	case !ok:
		return nil, errNotACMEHost
	case !onDemand:
		return a.managed.GetCertificateWithContext(ctx, hello)
	case isALPNChallenge(hello) || len(a.cache.AllMatchingCertificates(name)) > 0:
		// A validation, or a certificate in memory: certmagic answers at
		// once (and renews an on-demand certificate at handshakes, within
		// ctx).
		return a.onDemand.GetCertificateWithContext(ctx, hello)
	}
	o, err := a.startObtain(name)
	if err != nil {
		return nil, err
	}
	select {
	case <-o.done:
		if o.err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCertFailed, o.err)
		}
		return a.onDemand.GetCertificateWithContext(ctx, hello)
	case <-ctx.Done():
		return nil, ErrCertPending
	}
}

// isALPNChallenge reports a TLS-ALPN-01 validation: acme-tls/1 alone
// (RFC 8737 §3).
func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == protoACMETLS1
}

// startObtain returns the attempt under way for name, or starts one; it
// refuses a name whose last attempt failed until its retry time.
func (a *ACME) startObtain(name string) (*obtainment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, errStorageClosed
	}
	if o := a.pending[name]; o != nil {
		return o, nil
	}
	if f, ok := a.failed[name]; ok && time.Now().Before(f.until) {
		return nil, ErrCertFailed
	}
	o := &obtainment{done: make(chan struct{})}
	a.pending[name] = o
	a.wg.Add(1)
	go a.obtain(name, o)
	return o, nil
}

// obtain loads name's certificate from storage, or gets it from the CA,
// into certmagic's cache.
func (a *ACME) obtain(name string, o *obtainment) {
	defer a.wg.Done()
	ctx, cancel := context.WithTimeout(a.ctx, onDemandObtainTimeout)
	defer cancel()
	a.log.Info("acme: obtaining an on-demand certificate", "host", name)
	// Obtaining does nothing when storage has the certificate (after a
	// restart). The Async form retries within ctx; the Sync one would
	// prompt on the terminal for an email address when none is set.
	err := a.onDemand.ObtainCertAsync(ctx, name)
	if err == nil {
		_, err = a.onDemand.CacheManagedCertificate(ctx, name)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, name)
	if err != nil {
		f := a.failed[name]
		f.n++
		wait := min(onDemandRetryAfter<<min(f.n-1, 16), onDemandRetryMax)
		f.until = time.Now().Add(wait)
		a.failed[name] = f
		a.log.Error("acme: could not get an on-demand certificate; handshakes for it are refused until the retry",
			"host", name, "retry_in", wait.String(), "error", err)
	} else {
		delete(a.failed, name)
	}
	o.err = err
	close(o.done)
}

// HTTPHandler answers HTTP-01 challenges and passes everything else to
// next.
func (a *ACME) HTTPHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

// Close stops management: obtain retries, renewals and certmagic's
// maintenance goroutine. It waits (boundedly) until certmagic no longer
// uses the storage, so that no lock file is left behind. Certificates
// already held are still served. It is safe to call more than once.
func (a *ACME) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.cache.Stop()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(storageCloseWait):
		a.log.Warn("acme: an on-demand attempt still runs after Close", "waited", storageCloseWait)
	}
	if !a.storage.close(storageCloseWait) {
		a.log.Warn("acme: certmagic still uses the storage after Close", "waited", storageCloseWait)
	}
}

// onEvent counts and logs what happens to certificates. Labels come from
// a fixed set.
func (a *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		if renewal {
			a.metrics.Certs.WithLabelValues("renewed").Inc()
			a.log.Info("acme: certificate renewed", "host", host)
		} else {
			a.metrics.Certs.WithLabelValues("obtained").Inc()
			a.log.Info("acme: certificate obtained", "host", host)
		}
	case "cert_failed":
		a.metrics.Certs.WithLabelValues("failed").Inc()
		err, _ := data["error"].(error)
		a.log.Error("acme: could not get a certificate", "host", host, "renewal", renewal, "error", err)
	}
	return nil
}

// closingStorage is certmagic's storage (FileStorage, or a shared one)
// that Close can take away: it counts operations in flight and locks
// held, and once closed it refuses new operations (except Unlock) and
// reports when certmagic has let go.
type closingStorage struct {
	fs certmagic.Storage // a certmagic.TryLocker too (NewACME checks)

	mu     sync.Mutex
	closed bool
	busy   int            // operations in flight plus locks held
	held   map[string]int // locks held, by name
}

var (
	_ certmagic.Storage   = (*closingStorage)(nil)
	_ certmagic.TryLocker = (*closingStorage)(nil)
)

func (s *closingStorage) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStorageClosed
	}
	s.busy++
	return nil
}

func (s *closingStorage) end() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
}

// close refuses new operations and waits up to d for the busy ones; it
// reports whether they ended.
func (s *closingStorage) close(d time.Duration) bool {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		busy := s.busy
		s.mu.Unlock()
		if busy == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *closingStorage) Lock(ctx context.Context, name string) error {
	if err := s.begin(); err != nil {
		return err
	}
	err := s.fs.Lock(ctx, name)
	s.mu.Lock()
	if err == nil {
		s.held[name]++ // stays busy until Unlock
	} else {
		s.busy--
	}
	s.mu.Unlock()
	return err
}

func (s *closingStorage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := s.begin(); err != nil {
		return false, err
	}
	ok, err := s.fs.(certmagic.TryLocker).TryLock(ctx, name)
	s.mu.Lock()
	if ok {
		s.held[name]++
	} else {
		s.busy--
	}
	s.mu.Unlock()
	return ok, err
}

// Unlock works after close too: a lock taken before must be released.
func (s *closingStorage) Unlock(ctx context.Context, name string) error {
	err := s.fs.Unlock(ctx, name)
	s.mu.Lock()
	if s.held[name] > 0 {
		if s.held[name]--; s.held[name] == 0 {
			delete(s.held, name)
		}
		s.busy--
	}
	s.mu.Unlock()
	return err
}

func (s *closingStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return s.fs.Store(ctx, key, value)
}

func (s *closingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.fs.Load(ctx, key)
}

func (s *closingStorage) Delete(ctx context.Context, key string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return s.fs.Delete(ctx, key)
}

func (s *closingStorage) Exists(ctx context.Context, key string) bool {
	if s.begin() != nil {
		return false
	}
	defer s.end()
	return s.fs.Exists(ctx, key)
}

func (s *closingStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.fs.List(ctx, path, recursive)
}

func (s *closingStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := s.begin(); err != nil {
		return certmagic.KeyInfo{}, err
	}
	defer s.end()
	return s.fs.Stat(ctx, key)
}

// String names the storage in certmagic's logs.
func (s *closingStorage) String() string { return fmt.Sprint(s.fs) }

// newZap makes the zap logger certmagic wants, writing to h.
func newZap(h slog.Handler) *zap.Logger {
	return zap.New(slogCore{h: h.WithAttrs([]slog.Attr{slog.String("component", "certmagic")})})
}

// slogCore is a zapcore.Core that hands certmagic's (zap) log entries to
// slog. certmagic logs every lock, poll and challenge request at Info, so
// its Info becomes slog Debug; onEvent logs the outcomes at Info and Error.
type slogCore struct{ h slog.Handler }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return slogCore{h: c.h.WithAttrs(slogAttrs(fields))}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(slogAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (slogCore) Sync() error { return nil }

// slogAttrs converts zap fields in order; one field may give several
// attributes (an error adds its verbose form when it has one).
func slogAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		keys := make([]string, 0, len(enc.Fields))
		for k := range enc.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			attrs = append(attrs, slog.Any(k, enc.Fields[k]))
		}
	}
	return attrs
}
