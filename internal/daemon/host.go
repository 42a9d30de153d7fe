package daemon

import (
	"context"
	"fmt"
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
	ids   *policyhost.IDStore
	mx    *mxWatcher
	certs certManager
	stop  context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex // serialises rebuilds
	cfg     *config.Host
	waiting int
	poke    chan struct{} // the follow_mx set or interval changed
}

// certManager is the ACME side of the certificates (certmagic).
type certManager interface {
	policyhost.CertSource
	Sync(ctx context.Context, sites *policyhost.Sites)
	Close()
}

// startHost opens the listeners and serves. On error it returns what it
// started so that the caller can shut it down.
func startHost(ctx context.Context, d *Daemon, h *config.Host, addrs map[string][]string, serveErr chan<- error) (*hostRole, error) {
	ids, err := policyhost.OpenIDStore(filepath.Join(h.Storage, IDsFile))
	if err != nil {
		return nil, err
	}
	res := d.opts.Resolver
	if res == nil {
		if res, err = newResolver(h.Resolvers, d.opts.ResolvConf); err != nil && followsMX(h) {
			return nil, err
		}
	}
	mxw, err := newMXWatcher(d.log, res, filepath.Join(h.Storage, FollowMXFile), d.opts.Now, func(result string) {
		d.mxLookups.WithLabelValues(result).Inc()
	})
	if err != nil {
		return nil, err
	}
	r := &hostRole{d: d, ids: ids, mx: mxw, cfg: h, done: make(chan struct{}), poke: make(chan struct{}, 1)}

	var https, plain []net.Listener
	closeAll := func() {
		for _, l := range append(https, plain...) {
			l.Close()
		}
	}
	for _, a := range h.ListenHTTPS {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("host.listen_https %s: %w", a, err)
		}
		https = append(https, l)
		addrs["host-https"] = append(addrs["host-https"], l.Addr().String())
	}
	for _, a := range h.ListenHTTP {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("host.listen_http %s: %w", a, err)
		}
		plain = append(plain, l)
		addrs["host-http"] = append(addrs["host-http"], l.Addr().String())
	}
	if !h.ACME.Disabled {
		r.certs, err = newCertManager(d, h, https, plain)
		if err != nil {
			closeAll()
			return nil, err
		}
	}
	r.srv = policyhost.NewServer(d.log.With("role", "host"), h.Limits, r.certs, d.m)

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
		return nil, err
	}
	r.install(ctx, sites)

	for _, l := range https {
		go func() { serveErr <- r.srv.ServeHTTPS(l) }()
	}
	for _, l := range plain {
		go func() { serveErr <- r.srv.ServePlainHTTP(l) }()
	}
	wctx, cancel := context.WithCancel(ctx)
	r.stop = cancel
	go r.watchMX(wctx)
	return r, nil
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
// known MX set wait.
func (r *hostRole) build(h *config.Host) (*policyhost.Sites, error) {
	sites, skipped, err := policyhost.Build(h, r.ids, r.mx.Patterns, r.d.opts.Now())
	if err != nil {
		return nil, err
	}
	for d, why := range skipped {
		r.d.log.Warn("not serving a domain yet", "domain", d, "reason", why)
	}
	r.waiting = len(skipped)
	r.d.waiting.Set(float64(len(skipped)))
	return sites, nil
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
func (r *hostRole) apply(ctx context.Context, h *config.Host) error {
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
func (r *hostRole) restartNeeded(h *config.Host) []string {
	var out []string
	o := r.cfg
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
	defer close(r.done)
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

func (r *hostRole) counts() (served, waiting int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv.Sites().Len(), r.waiting
}

func (r *hostRole) shutdown(ctx context.Context) error {
	if r.stop != nil {
		r.stop()
		<-r.done
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
