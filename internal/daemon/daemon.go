// Package daemon runs `mailtls serve`: it loads the configuration, starts
// the roles it names (the MTA-STS policy host) and the admin listener
// (/healthz, /metrics), reloads on SIGHUP or when the file changes — keeping
// the old configuration when the new one is bad — and shuts down
// gracefully.
package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/scan"
)

// Options are what the command line and the environment give the daemon.
type Options struct {
	ConfigPath string // "" runs on the defaults (the web checker and the admin listener)
	Stderr     io.Writer
	Now        func() time.Time
	// Reload receives a value for each SIGHUP.
	Reload <-chan struct{}
	// WatchInterval is how often the config file is checked for changes;
	// 0 means 2s, negative turns watching off.
	WatchInterval time.Duration
	// ShutdownGrace bounds the wait for requests in flight at shutdown;
	// 0 means 15s.
	ShutdownGrace time.Duration
	// ResolvConf is the resolv.conf used when host.resolvers is empty.
	ResolvConf string
	// Resolver replaces the DNS client of follow_mx (tests).
	Resolver Resolver
	// Roots and Dialer replace the system roots and direct dials of the
	// resolver role's policy fetches (tests).
	Roots  *x509.CertPool
	Dialer *dial.Dialer
	// Ready, if set, is called once every listener is open, with their
	// addresses by role ("host-https", "host-http", "web", "web-https",
	// "admin").
	Ready func(addrs map[string][]string)
	// WebResolver, WebNet and WebRoots replace the web checker's DNS
	// client, the dial function beneath its SSRF guard and its trusted
	// roots (tests point them at the lab; the guard stays).
	WebResolver scan.Resolver
	WebNet      dial.NetDial
	WebRoots    *x509.CertPool
}

// Daemon is one running `mailtls serve`.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	level *slog.LevelVar
	reg   *prometheus.Registry
	m     *policyhost.Metrics
	// follow_mx metrics (fixed label values only)
	mxLookups *prometheus.CounterVec
	waiting   prometheus.Gauge

	mu       sync.Mutex // serialises reloads
	cfg      *config.Config
	fileHash [sha256.Size]byte
	host     *hostRole
	resolver *resolverRole
	web      *webRole
}

// Run loads the configuration and serves until ctx ends. A configuration
// or listener error at start is returned at once.
func Run(ctx context.Context, opts Options) error {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WatchInterval == 0 {
		opts.WatchInterval = 2 * time.Second
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 15 * time.Second
	}
	cfg, sum, err := load(opts.ConfigPath)
	if err != nil {
		return &ConfigError{Err: err}
	}
	d := &Daemon{opts: opts, cfg: cfg, fileHash: sum, level: new(slog.LevelVar), reg: prometheus.NewRegistry()}
	d.log = newLogger(opts.Stderr, cfg.Log, d.level)
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.m = policyhost.NewMetrics(d.reg)
	d.mxLookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_follow_mx_lookups_total",
		Help: "MX lookups of follow_mx domains by result: ok, temporary (the last set is kept), absent, panic."}, []string{"result"})
	d.waiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_host_domains_waiting",
		Help: "follow_mx domains not served yet because their MX set is unknown."})
	d.reg.MustRegister(d.mxLookups, d.waiting)
	return d.run(ctx)
}

// ConfigError is a configuration that could not be loaded at start (the
// command's usage error), as opposed to a failure while serving.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// load reads the configuration (the defaults when path is empty) and the
// hash of its bytes.
func load(path string) (*config.Config, [sha256.Size]byte, error) {
	if path == "" {
		return config.Default(), [sha256.Size]byte{}, nil
	}
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	c, err := config.Parse(path, data)
	return c, sha256.Sum256(data), err
}

func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) *slog.Logger {
	level.Set(parseLevel(c.Level))
	o := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addrs := map[string][]string{}
	var (
		serveErr = make(chan error, 8)
		closers  []func(context.Context) error
	)
	shutdown := func() {
		sctx, scancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
		defer scancel()
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](sctx); err != nil {
				d.log.Warn("shutdown", "error", err)
			}
		}
	}
	if d.cfg.Host != nil {
		h, err := startHost(ctx, d, d.cfg.Host, addrs, serveErr)
		if h != nil {
			d.host = h
			closers = append(closers, h.shutdown)
		}
		if err != nil {
			shutdown()
			return err
		}
	}
	if d.cfg.Web != nil {
		w, err := startWeb(ctx, d, d.cfg.Web, addrs, serveErr)
		if w != nil {
			d.web = w
			closers = append(closers, w.shutdown)
		}
		if err != nil {
			shutdown()
			return err
		}
	}
	if d.cfg.Resolver != nil {
		r, err := startResolver(ctx, d, d.cfg.Resolver, addrs, serveErr)
		if err != nil {
			shutdown()
			return err
		}
		d.resolver = r
		closers = append(closers, r.shutdown)
	}
	if d.cfg.Admin.Listen != "off" {
		srv, ln, err := d.startAdmin(d.cfg.Admin.Listen)
		if err != nil {
			shutdown()
			return fmt.Errorf("admin listener: %w", err)
		}
		addrs["admin"] = []string{ln.Addr().String()}
		go func() { serveErr <- serveAdmin(srv, ln) }()
		closers = append(closers, srv.Shutdown)
	}
	roles := []string{}
	if d.host != nil {
		roles = append(roles, "host")
	}
	if d.resolver != nil {
		roles = append(roles, "resolver")
	}
	if d.web != nil {
		roles = append(roles, "web")
	}
	for _, role := range []string{"host-https", "host-http", "resolver", "web", "web-https", "admin"} {
		for _, a := range addrs[role] {
			d.log.Info("listening", "listener", role, "addr", a)
		}
	}
	for _, u := range webURLs(addrs) {
		d.log.Info("web checker ready", "url", u)
	}
	d.log.Info("mailtls serve started", "config", d.opts.ConfigPath, "roles", roles)
	if d.opts.Ready != nil {
		d.opts.Ready(addrs)
	}
	var watch <-chan time.Time
	if d.opts.WatchInterval > 0 && d.opts.ConfigPath != "" {
		t := time.NewTicker(d.opts.WatchInterval)
		defer t.Stop()
		watch = t.C
	}
	for {
		select {
		case <-ctx.Done():
			d.log.Info("shutting down", "grace", d.opts.ShutdownGrace.String())
			shutdown()
			d.log.Info("stopped")
			return nil
		case err := <-serveErr:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("a listener failed; shutting down", "error", err)
				shutdown()
				return err
			}
		case <-d.opts.Reload:
			d.Reload(ctx, "signal")
		case <-watch:
			d.reloadIfChanged(ctx)
		}
	}
}

// reloadIfChanged reloads when the file's bytes changed (not merely its
// time stamp).
func (d *Daemon) reloadIfChanged(ctx context.Context) {
	data, err := config.ReadFile(d.opts.ConfigPath)
	if err != nil {
		return // reported by the reload that the next real change triggers
	}
	d.mu.Lock()
	same := sha256.Sum256(data) == d.fileHash
	d.mu.Unlock()
	if !same {
		d.Reload(ctx, "file changed")
	}
}

// Reload loads the configuration file again. A bad file is rejected with
// the reason, and the running configuration keeps serving.
func (d *Daemon) Reload(ctx context.Context, why string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.ConfigPath == "" {
		return nil
	}
	data, err := config.ReadFile(d.opts.ConfigPath)
	var next *config.Config
	if err == nil {
		d.fileHash = sha256.Sum256(data) // a bad file is not retried until it changes again
		next, err = config.Parse(d.opts.ConfigPath, data)
	}
	if err == nil {
		err = d.apply(ctx, next)
	}
	if err != nil {
		d.m.Reloads.WithLabelValues("error").Inc()
		d.log.Error("configuration rejected; still serving the previous one", "why", why, "error", err)
		return err
	}
	d.m.Reloads.WithLabelValues("ok").Inc()
	d.log.Info("configuration reloaded", "why", why)
	return nil
}

// apply switches to a new configuration. What only a restart can change
// (listeners, storage, ACME account, log format) is kept and reported.
func (d *Daemon) apply(ctx context.Context, next *config.Config) error {
	var restart []string
	if next.Admin.Listen != d.cfg.Admin.Listen {
		restart = append(restart, "admin.listen")
	}
	if next.Log.Format != d.cfg.Log.Format {
		restart = append(restart, "log.format")
	}
	switch {
	case (next.Host == nil) != (d.host == nil):
		restart = append(restart, "host (turning the role on or off)")
	case d.host != nil:
		restart = append(restart, d.host.restartNeeded(next.Host)...)
		if err := d.host.apply(ctx, next.Host); err != nil {
			return err
		}
	}
	switch {
	case (next.Web == nil) != (d.web == nil):
		restart = append(restart, "web (turning the role on or off)")
	case d.web != nil:
		restart = append(restart, d.web.restartNeeded(next.Web)...)
	}
	switch {
	case (next.Resolver == nil) != (d.resolver == nil):
		restart = append(restart, "resolver (turning the role on or off)")
	case d.resolver != nil:
		restart = append(restart, d.resolver.restartNeeded(next.Resolver)...)
		d.resolver.apply(next.Resolver)
	}
	d.level.Set(parseLevel(next.Log.Level))
	if len(restart) > 0 {
		d.log.Warn("these settings changed but take effect only after a restart", "keys", restart)
	}
	d.cfg = next
	return nil
}

// healthz is the admin status: the process is up and serving.
func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	b.WriteString("ok\n")
	if h := d.host; h != nil {
		served, waiting := h.counts()
		fmt.Fprintf(&b, "host: %d domains served, %d waiting for their MX set\n", served, waiting)
	}
	if r := d.resolver; r != nil {
		fmt.Fprintf(&b, "resolver: %d domains cached, %d connections\n", r.cache.Len(), r.srv.Conns())
	}
	if w := d.web; w != nil {
		queued, running := w.jobs.Counts()
		fmt.Fprintf(&b, "web: %d scans running, %d queued\n", running, queued)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (d *Daemon) startAdmin(addr string) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.healthz)
	mux.Handle("GET /metrics", promhttpHandler(d.reg))
	if d.resolver != nil {
		d.resolver.routes(mux)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	return srv, ln, nil
}

func serveAdmin(srv *http.Server, ln net.Listener) error { return srv.Serve(ln) }
