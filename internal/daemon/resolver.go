package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
	"github.com/mailtls/mailtls/internal/stscache"
)

// resolverRole answers Postfix's smtp_tls_policy_maps lookups over the
// socketmap protocol (docs/resolver.md).
type resolverRole struct {
	d     *Daemon
	cfg   *config.Resolver
	cache *stscache.Cache
	res   *resolver.Resolver
	srv   *socketmap.Server
	zones atomic.Pointer[resolver.Zones]
	stop  context.CancelFunc
	done  chan struct{}
}

// zonesOf builds the zones of a configuration.
func zonesOf(rc *config.Resolver) *resolver.Zones {
	conv := func(z config.Zone) sendpolicy.Zone {
		return sendpolicy.Zone{StrictTesting: z.StrictTesting, RequireSNI: z.SNI(), TLSRPT: z.TLSRPT, DeferOnSTSFailure: z.DeferOnSTSFailure}
	}
	z := &resolver.Zones{Default: conv(rc.DefaultZone), Named: map[string]sendpolicy.Zone{}}
	for name, zc := range rc.Zones {
		z.Named[name] = conv(zc)
	}
	return z
}

// resolverClient is the DNS client of the resolver role.
func resolverClient(rc *config.Resolver, resolvConf string) (*resolve.Client, error) {
	servers := rc.Resolvers
	if len(servers) == 0 {
		s, err := resolve.SystemServers(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("resolver: no DNS resolver: %v (set resolver.resolvers)", err)
		}
		servers = s
	}
	c := &resolve.Client{Servers: servers}
	if len(rc.TrustAD) > 0 {
		trusted := map[string]bool{}
		for _, t := range rc.TrustAD {
			trusted[strings.Trim(t, "[]")] = true
		}
		c.TrustAD = func(server string) bool {
			host, _, err := net.SplitHostPort(server)
			return resolve.IsLoopbackServer(server) || err == nil && trusted[host] || trusted[server]
		}
	}
	return c, nil
}

// startResolver opens the resolver's cache and listeners and serves.
func startResolver(ctx context.Context, d *Daemon, c *config.Config) (role, error) {
	rc := c.Resolver
	dnsClient, err := resolverClient(rc, d.opts.ResolvConf)
	if err != nil {
		return nil, err
	}
	path := rc.CacheFile
	if path == "none" {
		path = ""
	}
	cache, err := stscache.Open(stscache.Options{Path: path, MaxEntries: rc.CacheSize, Now: d.opts.Now, Log: d.log})
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	r := &resolverRole{d: d, cfg: rc, cache: cache, done: make(chan struct{})}
	r.zones.Store(zonesOf(rc))
	metrics := resolver.NewMetrics(d.reg, func() float64 { return float64(cache.Len()) })
	r.res = resolver.New(resolver.Options{
		DNS:             dnsClient,
		Fetcher:         &fetch.Fetcher{Dialer: d.opts.Dialer, Roots: d.opts.Roots, UserAgent: "mailtls (MTA-STS sender)", AcceptEncodings: []string{}},
		Dialer:          d.opts.Dialer,
		Cache:           cache,
		Now:             d.opts.Now,
		LookupTimeout:   rc.LookupTimeout.D(),
		CheckInterval:   rc.CheckInterval.D(),
		NegativeTTL:     rc.NegativeTTL.D(),
		TemporaryTTL:    rc.TemporaryTTL.D(),
		RefreshInterval: rc.RefreshInterval.D(),
		Metrics:         metrics,
		Log:             d.log,
	})
	r.srv = &socketmap.Server{
		Handler: func(ctx context.Context, req socketmap.Request) socketmap.Reply {
			return r.res.Handler(*r.zones.Load())(ctx, req)
		},
		MaxConns:    rc.MaxConns,
		MaxConnsIP:  rc.MaxConnsPerIP,
		IdleTimeout: rc.IdleTimeout.D(),
		Events: socketmap.Events{
			Panic: func(any) { d.m.Panics.Inc() },
			Log:   d.log,
		},
	}
	lns, err := d.listen("resolver", rc.Listen)
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("resolver listener: %w", err)
	}
	if rc.Unix != "" {
		l, err := listenUnix(rc.Unix, rc.UnixMode)
		if err != nil {
			closeListeners(lns)
			cache.Close()
			return nil, fmt.Errorf("resolver unix socket %s: %w", rc.Unix, err)
		}
		lns = append(lns, l)
		d.addrs["resolver"] = append(d.addrs["resolver"], "unix:"+rc.Unix)
	}
	bg, stop := context.WithCancel(context.Background())
	r.stop = stop
	go func() {
		defer close(r.done)
		cdone := make(chan struct{})
		go func() { defer close(cdone); cache.Run(bg) }()
		r.res.Run(bg)
		<-cdone
	}()
	for _, l := range lns {
		d.serve(func() error {
			if err := r.srv.Serve(l); !errors.Is(err, socketmap.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	return r, nil
}

// listenUnix opens a unix socket at path with the given octal mode,
// replacing a stale socket file (never another kind of file).
func listenUnix(path, mode string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	m, _ := strconv.ParseUint(mode, 8, 32)
	if err := os.Chmod(path, os.FileMode(m)); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// restartNeeded lists the settings that a reload cannot change.
func (r *resolverRole) restartNeeded(next *config.Config) []string {
	rc := next.Resolver
	if rc == nil {
		return nil
	}
	var out []string
	o := r.cfg
	if !slices.Equal(o.Listen, rc.Listen) || o.Unix != rc.Unix || o.UnixMode != rc.UnixMode {
		out = append(out, "resolver listeners")
	}
	if o.CacheFile != rc.CacheFile || o.CacheSize != rc.CacheSize {
		out = append(out, "resolver.cache_file/cache_size")
	}
	if !slices.Equal(o.Resolvers, rc.Resolvers) || !slices.Equal(o.TrustAD, rc.TrustAD) {
		out = append(out, "resolver.resolvers/trust_ad")
	}
	if o.LookupTimeout != rc.LookupTimeout || o.CheckInterval != rc.CheckInterval || o.NegativeTTL != rc.NegativeTTL ||
		o.TemporaryTTL != rc.TemporaryTTL || o.RefreshInterval != rc.RefreshInterval || o.MaxConns != rc.MaxConns ||
		o.MaxConnsPerIP != rc.MaxConnsPerIP || o.IdleTimeout != rc.IdleTimeout {
		out = append(out, "resolver timeouts and limits")
	}
	return out
}

// apply takes the zones of a reloaded configuration at once.
func (r *resolverRole) apply(_ context.Context, next *config.Config) error {
	if next.Resolver != nil {
		r.zones.Store(zonesOf(next.Resolver))
	}
	return nil
}

// health reports the cache and the connections.
func (r *resolverRole) health(w io.Writer, _ time.Time) bool {
	fmt.Fprintf(w, "resolver: %d domains cached, %d connections\n", r.cache.Len(), r.srv.Conns())
	return false
}

func (r *resolverRole) shutdown(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	r.stop()
	<-r.done
	r.res.Close()
	if cerr := r.cache.Close(); err == nil {
		err = cerr
	}
	if r.cfg.Unix != "" {
		os.Remove(r.cfg.Unix)
	}
	return err
}

// Admin routes (docs/resolver.md, "Admin endpoints").
func (r *resolverRole) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /resolver/domains/{domain}", r.getDomain)
	mux.HandleFunc("DELETE /resolver/domains/{domain}", r.purgeDomain)
	mux.HandleFunc("DELETE /resolver/domains", r.purgeAll)
	mux.HandleFunc("GET /resolver/explain/{domain}", r.explain)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (r *resolverRole) domainOf(w http.ResponseWriter, req *http.Request) (string, bool) {
	name, why, ok := sendpolicy.NextHop(req.PathValue("domain"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": why})
	}
	return name, ok
}

func (r *resolverRole) getDomain(w http.ResponseWriter, req *http.Request) {
	name, ok := r.domainOf(w, req)
	if !ok {
		return
	}
	e := r.cache.Get(name)
	if e == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not in the cache", "domain": name})
		return
	}
	writeJSON(w, http.StatusOK, resolver.ViewEntry(e, r.d.opts.Now()))
}

func (r *resolverRole) purgeDomain(w http.ResponseWriter, req *http.Request) {
	name, ok := r.domainOf(w, req)
	if !ok {
		return
	}
	r.cache.Delete(name)
	r.d.log.Info("resolver: cache entry purged", "domain", name)
	writeJSON(w, http.StatusOK, map[string]string{"purged": name})
}

func (r *resolverRole) purgeAll(w http.ResponseWriter, req *http.Request) {
	n := r.cache.Len()
	r.cache.Purge()
	r.d.log.Info("resolver: cache purged", "entries", n)
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// explain looks a domain up through the running daemon (its cache) and
// returns the decision, the reply and why: what `mailtls resolve --server`
// prints.
func (r *resolverRole) explain(w http.ResponseWriter, req *http.Request) {
	key := req.PathValue("domain")
	zone := r.zones.Load().For(req.URL.Query().Get("zone"))
	ctx, cancel := context.WithTimeout(req.Context(), 30*time.Second)
	defer cancel()
	dec, res := r.res.Decide(ctx, key, zone)
	writeJSON(w, http.StatusOK, resolver.Explain(key, zone, dec, res, r.cache.Peek(dec.Domain), r.d.opts.Now()))
}
