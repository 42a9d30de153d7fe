package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
)

// Files kept in host.storage.
const (
	IDsFile      = "ids.json"       // policy ids by body hash (shared with `serve records`)
	FollowMXFile = "follow-mx.json" // last known MX sets of follow_mx domains
)

// hostRole is the MTA-STS policy host: the HTTPS and HTTP servers, the
// policy ids, the follow_mx watcher and the certificates.
type hostRole struct {
	d     *Daemon
	srv   *policyhost.Server
	ids   policyhost.IDAssigner
	mx    *mxWatcher
	certs certManager
	stop  context.CancelFunc
	bg    sync.WaitGroup // watchMX and watchCerts

	mu        sync.Mutex // serialises rebuilds
	cfg       *config.Host
	waiting   int
	certState map[string]policyhost.CertState // last logged, by domain
	poke      chan struct{}                   // the follow_mx set or interval changed
}

// certManager is the ACME side of the certificates (certmagic).
type certManager interface {
	policyhost.CertSource
	Sync(ctx context.Context, sites *policyhost.Sites)
	Close()
}

// certCheckInterval is how often static certificates are checked for
// expiry (they are checked at every load too).
const certCheckInterval = time.Hour

// startHost opens the listeners and serves. On error it returns what it
// started so that the caller can shut it down. A static certificate that
// cannot be served is a *ConfigError, as a bad file is.
func startHost(ctx context.Context, d *Daemon, c *config.Config) (role, error) {
	h := c.Host
	var err error
	res := d.opts.Resolver
	if res == nil {
		if res, err = newResolver(h.Resolvers, d.opts.ResolvConf); err != nil && followsMX(h) {
			return nil, err
		}
	}
	obs := func(result string) { d.mxLookups.WithLabelValues(result).Inc() }
	var ids policyhost.IDAssigner
	var mxw *mxWatcher
	if sharedHostState(c) && d.store != nil {
		// Shared by every host instance on the store (docs/scaling.md).
		if err := importHostFiles(ctx, d.log, d.store, h.Storage); err != nil {
			return nil, err
		}
		ids = storeIDs{ctx: ctx, st: d.store}
		mxw, err = newSharedMXWatcher(ctx, d.log, res, d.store, d.opts.Now, obs)
	} else {
		if ids, err = policyhost.OpenIDStore(filepath.Join(h.Storage, IDsFile)); err != nil {
			return nil, err
		}
		mxw, err = newMXWatcher(d.log, res, filepath.Join(h.Storage, FollowMXFile), d.opts.Now, obs)
	}
	if err != nil {
		return nil, err
	}
	r := &hostRole{d: d, ids: ids, mx: mxw, cfg: h, poke: make(chan struct{}, 1), certState: map[string]policyhost.CertState{}}

	https, err := d.listen("host-https", h.ListenHTTPS)
	if err != nil {
		return nil, fmt.Errorf("host.listen_https: %w", err)
	}
	plain, err := d.listen("host-http", h.ListenHTTP)
	closeAll := func() {
		for _, l := range append(https, plain...) {
			l.Close()
		}
	}
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("host.listen_http: %w", err)
	}
	if !h.ACME.Disabled {
		r.certs, err = newCertManager(ctx, d, c, https, plain)
		if err != nil {
			closeAll()
			return nil, err
		}
	}
	r.srv = policyhost.NewServer(d.log.With("role", "host"), hostLimits(h.Limits), r.certs, d.m)
	r.srv.Extra = d.reportsHandler // the TLS-RPT HTTPS intake, when the reports role is on
	d.registerCertMetrics(r)

	// The first MX lookups are awaited (bounded), so that follow_mx
	// domains are served from the start when DNS works.
	if followsMX(h) {
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		r.mx.Refresh(ictx, followDomains(h))
		cancel()
	}
	sites, err := r.build(h)
	if err != nil {
		closeAll()
		if r.certs != nil {
			r.certs.Close()
		}
		if errors.As(err, new(*policyhost.CertError)) {
			err = &ConfigError{Err: err}
		}
		return nil, err
	}
	r.install(ctx, sites)

	for _, l := range https {
		d.serve(func() error { return r.srv.ServeHTTPS(l) })
	}
	for _, l := range plain {
		d.serve(func() error { return r.srv.ServePlainHTTP(l) })
	}
	wctx, cancel := context.WithCancel(ctx)
	r.stop = cancel
	r.bg.Add(2)
	go func() { defer r.bg.Done(); r.watchMX(wctx) }()
	go func() { defer r.bg.Done(); r.watchCerts(wctx) }()
	return r, nil
}

// registerCertMetrics exports the static certificates by state
// (mailtls_host_certificates{state}), computed at each scrape so that
// time passing shows.
func (d *Daemon) registerCertMetrics(r *hostRole) {
	for _, st := range policyhost.CertStates {
		d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "mailtls_host_certificates",
			Help:        "Static certificate files by state: ok, expiring (within 14 days), expired, not_yet_valid.",
			ConstLabels: prometheus.Labels{"state": string(st)},
		}, func() float64 { return float64(r.certCounts(d.opts.Now())[st]) }))
	}
}

func port(ls []net.Listener) int {
	if len(ls) == 0 {
		return 0
	}
	_, p, _ := net.SplitHostPort(ls[0].Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func followsMX(h *config.Host) bool { return len(followDomains(h)) > 0 }

func followDomains(h *config.Host) []string {
	var out []string
	for d, dc := range h.Domains {
		if dc.FollowMX {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func newResolver(servers []string, resolvConf string) (*resolve.Client, error) {
	if len(servers) == 0 {
		s, err := resolve.SystemServers(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("follow_mx needs a DNS resolver: %v (set host.resolvers)", err)
		}
		servers = s
	}
	return &resolve.Client{Servers: servers}, nil
}

// build makes the sites of a configuration; follow_mx domains without a
// known MX set wait. The caller holds r.mu (or has not started serving).
func (r *hostRole) build(h *config.Host) (*policyhost.Sites, error) {
	domains, skipped, err := hostDomains(h, r.mx.Patterns)
	if err != nil {
		return nil, err
	}
	sites, err := policyhost.Build(domains, h.CacheControl, r.ids, r.d.opts.Now())
	if err != nil {
		return nil, err
	}
	for d, why := range skipped {
		r.d.log.Warn("not serving a domain yet", "domain", d, "reason", why)
	}
	r.waiting = len(skipped)
	r.d.waiting.Set(float64(len(skipped)))
	clear(r.certState) // every problem is logged again for the new set
	r.logCerts(sites)
	return sites, nil
}

// hostDomains turns the host configuration into what policyhost serves:
// each domain's policy (config.Domain.ServedPolicy) and its static
// certificate, read here with the cap of certificate files. follow_mx
// domains whose MX set is not known yet are left out with the reason in
// skipped; every certificate file that cannot be read is reported at once
// (*policyhost.CertError).
func hostDomains(h *config.Host, mx policyhost.MXSource) (domains []policyhost.Domain, skipped map[string]error, err error) {
	skipped = map[string]error{}
	var certErrs []error
	for _, name := range slices.Sorted(maps.Keys(h.Domains)) {
		dc := h.Domains[name]
		pol, ok := dc.ServedPolicy(name, mx)
		if !ok {
			skipped[name] = fmt.Errorf("the MX set of %s is not known yet", name)
			continue
		}
		d := policyhost.Domain{Name: name, Policy: pol, OnDemand: dc.OnDemand, FollowMX: dc.FollowMX, CertFile: dc.Cert}
		if dc.Cert != "" {
			if d.CertPEM, err = config.ReadLimited(dc.Cert, policyhost.MaxCertFileSize); err == nil {
				d.KeyPEM, err = config.ReadLimited(dc.Key, policyhost.MaxCertFileSize)
			}
			if err != nil {
				certErrs = append(certErrs, &policyhost.CertError{Domain: name, File: dc.Cert, Err: err})
				continue
			}
		}
		domains = append(domains, d)
	}
	if len(certErrs) > 0 {
		return nil, nil, errors.Join(certErrs...)
	}
	return domains, skipped, nil
}

// hostLimits are the host's limits as policyhost takes them.
func hostLimits(l config.Limits) policyhost.Limits {
	return policyhost.Limits{
		MaxConns: l.MaxConns, MaxConnsPerIP: l.MaxConnsPerIP, RequestsPerSecond: l.RequestsPerSecond, Burst: l.Burst,
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(), ReadTimeout: l.ReadTimeout.D(), WriteTimeout: l.WriteTimeout.D(), IdleTimeout: l.IdleTimeout.D(),
		MaxHeaderBytes: l.MaxHeaderBytes,
	}
}

// logCerts logs each static certificate whose state is not ok and has
// changed since it was last logged: an error for one senders refuse now,
// a warning for one that expires within 14 days.
func (r *hostRole) logCerts(sites *policyhost.Sites) {
	now := r.d.opts.Now()
	for _, s := range sites.All() {
		st := s.CertState(now)
		if st == "" || st == r.certState[s.Domain] {
			continue
		}
		r.certState[s.Domain] = st
		args := []any{"domain", s.Domain, "file", s.CertFile, "not_before", s.NotBefore, "not_after", s.NotAfter}
		switch st {
		case policyhost.CertExpiring:
			r.d.log.Warn("certificate expires soon; renew the file (senders refuse an expired one)", append(args, "in", s.NotAfter.Sub(now).Round(time.Hour).String())...)
		case policyhost.CertExpired:
			r.d.log.Error("certificate has expired: senders cannot fetch this policy; renew the file", args...)
		case policyhost.CertNotYetValid:
			r.d.log.Error("certificate is not valid yet: senders cannot fetch this policy", args...)
		}
	}
}

// watchCerts checks the static certificates for expiry every
// certCheckInterval.
func (r *hostRole) watchCerts(ctx context.Context) {
	t := time.NewTicker(certCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.mu.Lock()
			r.logCerts(r.srv.Sites())
			r.mu.Unlock()
		}
	}
}

// certCounts counts the static certificates by state at now.
func (r *hostRole) certCounts(now time.Time) map[policyhost.CertState]int {
	counts := map[policyhost.CertState]int{}
	for _, s := range r.srv.Sites().All() {
		if st := s.CertState(now); st != "" {
			counts[st]++
		}
	}
	return counts
}

// install serves sites and hands the ACME names to certmagic.
func (r *hostRole) install(ctx context.Context, sites *policyhost.Sites) {
	r.srv.Swap(sites)
	if r.certs != nil {
		r.certs.Sync(ctx, sites)
	}
}

// apply switches to a new host configuration (the caller holds the
// daemon's reload lock).
func (r *hostRole) apply(ctx context.Context, next *config.Config) error {
	h := next.Host
	if h == nil {
		return nil // turning the role off takes a restart
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if followsMX(h) {
		// New follow_mx domains are looked up before they are served.
		var fresh []string
		for _, d := range followDomains(h) {
			if _, ok := r.mx.Patterns(d); !ok {
				fresh = append(fresh, d)
			}
		}
		if len(fresh) > 0 {
			ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
			r.mx.Refresh(ictx, fresh)
			cancel()
		}
	}
	sites, err := r.build(h)
	if err != nil {
		return err
	}
	old := r.cfg
	r.cfg = h
	r.install(ctx, sites)
	if old.FollowMXInterval != h.FollowMXInterval || !slices.Equal(followDomains(old), followDomains(h)) {
		select {
		case r.poke <- struct{}{}:
		default:
		}
	}
	return nil
}

// restartNeeded lists the host settings a reload cannot change.
func (r *hostRole) restartNeeded(next *config.Config) []string {
	h := next.Host
	if h == nil {
		return nil
	}
	var out []string
	r.mu.Lock()
	o := r.cfg
	r.mu.Unlock()
	if !slices.Equal(o.ListenHTTPS, h.ListenHTTPS) {
		out = append(out, "host.listen_https")
	}
	if !slices.Equal(o.ListenHTTP, h.ListenHTTP) {
		out = append(out, "host.listen_http")
	}
	if o.Storage != h.Storage {
		out = append(out, "host.storage")
	}
	if o.ACME.Disabled != h.ACME.Disabled || o.ACME.CA != h.ACME.CA || o.ACME.Email != h.ACME.Email ||
		o.ACME.TrustedRoots != h.ACME.TrustedRoots || !slices.Equal(o.ACME.Challenges, h.ACME.Challenges) {
		out = append(out, "host.acme")
	}
	if o.Limits != h.Limits {
		out = append(out, "host.limits")
	}
	if !slices.Equal(o.Resolvers, h.Resolvers) {
		out = append(out, "host.resolvers")
	}
	return out
}

// watchMX re-checks the follow_mx domains every follow_mx_interval and
// rebuilds the policies when an MX set changed.
func (r *hostRole) watchMX(ctx context.Context) {
	for {
		r.mu.Lock()
		interval := r.cfg.FollowMXInterval.D()
		r.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.poke:
			t.Stop()
			continue
		case <-t.C:
		}
		r.mu.Lock()
		h := r.cfg
		r.mu.Unlock()
		if !followsMX(h) || !r.mx.Refresh(ctx, followDomains(h)) {
			continue
		}
		// Rebuild under the daemon's lock so that a reload cannot interleave.
		r.d.mu.Lock()
		r.mu.Lock()
		if r.cfg == h {
			if sites, err := r.build(h); err != nil {
				r.d.log.Error("follow_mx: rebuilding the policies failed; still serving the previous ones", "error", err)
			} else {
				r.install(ctx, sites)
			}
		}
		r.mu.Unlock()
		r.d.mu.Unlock()
	}
}

// health reports the domains served and waiting, and every static
// certificate senders refuse or soon will; either is degraded.
func (r *hostRole) health(w io.Writer, now time.Time) bool {
	r.mu.Lock()
	sites, waiting := r.srv.Sites(), r.waiting
	r.mu.Unlock()
	fmt.Fprintf(w, "host: %d domains served, %d waiting for their MX set\n", sites.Len(), waiting)
	degraded := waiting > 0
	for _, s := range sites.All() {
		switch s.CertState(now) {
		case policyhost.CertExpiring:
			fmt.Fprintf(w, "host: the certificate of %s expires %s (%s)\n", s.Host, s.NotAfter.UTC().Format(time.RFC3339), s.CertFile)
		case policyhost.CertExpired:
			fmt.Fprintf(w, "host: the certificate of %s expired %s (%s)\n", s.Host, s.NotAfter.UTC().Format(time.RFC3339), s.CertFile)
		case policyhost.CertNotYetValid:
			fmt.Fprintf(w, "host: the certificate of %s is valid only from %s (%s)\n", s.Host, s.NotBefore.UTC().Format(time.RFC3339), s.CertFile)
		default:
			continue
		}
		degraded = true
	}
	return degraded
}

// shutdown stops the servers, waiting for requests in flight until ctx
// ends, then the watchers and certificate management.
func (r *hostRole) shutdown(ctx context.Context) error {
	if r.stop != nil {
		r.stop()
		r.bg.Wait()
	}
	err := r.srv.Shutdown(ctx)
	if r.certs != nil {
		r.certs.Close()
	}
	return err
}

func promhttpHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}
