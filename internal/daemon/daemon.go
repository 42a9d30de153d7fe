// Package daemon runs `mailtls serve`: it loads the configuration, starts
// the roles it names (the MTA-STS policy host) and the admin listener
// (/healthz, /metrics), reloads on SIGHUP or when the file changes — keeping
// the old configuration when the new one is bad — and shuts down
// gracefully.
//
// The shape every role shares: a role is switched on by its section of
// the one configuration file (roleTypes), opens its listeners with
// Daemon.listen and serves them with Daemon.serve, applies a reloaded
// configuration in apply, reports in /healthz through health, and stops in
// shutdown.
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailtls/mailtls/internal/certstorage"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
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
	// LoadTimeout bounds reading and checking the file at a reload (the
	// reload is rejected past it); 0 means 30s.
	LoadTimeout time.Duration
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
	// addresses by name ("host-https", "host-http", "web", "web-https",
	// "reports-smtp", "admin").
	Ready func(addrs map[string][]string)
	// WebResolver, WebNet and WebRoots replace the web checker's DNS
	// client, the dial function beneath its SSRF guard and its trusted
	// roots (tests point them at the lab; the guard stays).
	WebResolver Resolver
	WebNet      dial.NetDial
	WebRoots    *x509.CertPool
	// Roles, when not nil, are the only roles this instance runs (serve
	// --roles): a subset of host, resolver, web, worker, reports and
	// admin, each configured. nil runs every configured role, and the
	// admin listener unless it is "off".
	Roles []string
	// Getenv reads the environment for the store's default path
	// (sqlstore.DefaultPath); default os.Getenv.
	Getenv func(string) string
	// MonitorPoll replaces how often the worker looks at the store for
	// due domains and messages (tests; default 30s).
	MonitorPoll time.Duration
	// MailRoots verify the mail relay's certificate instead of the system
	// roots (tests).
	MailRoots *x509.CertPool
	// IMAPDial and IMAPRoots replace the reports role's IMAP connections
	// and their trusted roots (tests).
	IMAPDial  func(ctx context.Context, network, addr string) (net.Conn, error)
	IMAPRoots *x509.CertPool
}

// role is one part of serve, switched on by its section of the
// configuration.
type role interface {
	// restartNeeded lists the keys of next that only a restart applies.
	restartNeeded(next *config.Config) []string
	// apply switches to next; the caller holds the daemon's lock.
	apply(ctx context.Context, next *config.Config) error
	// health writes the role's lines of /healthz and reports whether
	// something needs attention.
	health(w io.Writer, now time.Time) (degraded bool)
	// shutdown stops serving, waiting for requests in flight until ctx
	// ends, and ends every goroutine of the role.
	shutdown(ctx context.Context) error
}

// roleTypes are the roles in start order; a role is on when its section
// is present and Options.Roles, when given, names it.
var roleTypes = []struct {
	name  string
	on    func(*config.Config) bool
	start func(ctx context.Context, d *Daemon, c *config.Config) (role, error)
}{
	{"host", func(c *config.Config) bool { return c.Host != nil }, startHost},
	{"resolver", func(c *config.Config) bool { return c.Resolver != nil }, startResolver},
	{"web", func(c *config.Config) bool { return c.Web != nil }, startWeb},
	// The worker rides with the web section (its scanner settings and the
	// saved domains of its accounts).
	{"worker", func(c *config.Config) bool { return c.Web != nil }, startWorker},
	// After host and web: the HTTPS intake answers on their listeners,
	// and STARTTLS uses the host's certificates.
	{"reports", func(c *config.Config) bool { return c.Reports != nil }, startReports},
}

// adminRouter is a role with endpoints of its own on the admin listener.
type adminRouter interface {
	routes(mux *http.ServeMux)
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

	mu       sync.Mutex // serialises reloads and role rebuilds
	cfg      *config.Config
	fileHash [sha256.Size]byte
	roles    []role

	store     *sqlstore.DB // open while a role that keeps data runs; nil otherwise
	storePath string
	mail      mail.Sender // the relay, or the log without one
	// The certificates' storage on PostgreSQL (certStorage), when the
	// store is PostgreSQL.
	certsOnce sync.Once
	certs     *certstorage.Postgres
	certsErr  error
	// reportsHTTPS routes the TLS-RPT HTTPS intake on the host and web
	// listeners (nil: off).
	reportsHTTPS atomic.Pointer[route]
	// worker is this process's monitor worker, when the worker role runs.
	worker atomic.Pointer[monitor.Worker]

	addrs   map[string][]string // listener addresses by name (start only)
	serving sync.WaitGroup      // every goroutine that serves a listener
	failed  chan error          // the first listener that failed (capacity 1)
	loading atomic.Bool         // a load of the file is running
}

// Run loads the configuration and serves until ctx ends. A configuration
// error at start is a *ConfigError; a listener that cannot open is
// another error.
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
	if opts.LoadTimeout == 0 {
		opts.LoadTimeout = 30 * time.Second
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 15 * time.Second
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	d := &Daemon{opts: opts, level: new(slog.LevelVar), reg: prometheus.NewRegistry(),
		addrs: map[string][]string{}, failed: make(chan error, 1)}
	cfg, sum, err := d.load(ctx, 0)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while loading
		}
		return &ConfigError{Err: err}
	}
	if err := checkRoles(opts.Roles, cfg); err != nil {
		return &ConfigError{Err: err}
	}
	d.cfg, d.fileHash = cfg, sum
	d.log = newLogger(opts.Stderr, cfg.Log, d.level)
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.m = policyhost.NewMetrics(d.reg)
	d.mxLookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtls_host_follow_mx_lookups_total",
		Help: "MX lookups of follow_mx domains by result: ok, temporary (the last set is kept), absent, panic."}, []string{"result"})
	d.waiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailtls_host_domains_waiting",
		Help: "follow_mx domains not served yet because their MX set is unknown."})
	d.reg.MustRegister(d.mxLookups, d.waiting, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_dns_panics_total",
		Help: "Panics recovered inside DNS lookups (each is a bug; the lookup fails as an error)."}, func() float64 { return float64(resolve.Panics()) }))
	return d.run(ctx)
}

// ConfigError is a configuration that could not be loaded at start (the
// command's usage error), as opposed to a failure while serving.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// errLoadBusy is a load refused because an abandoned one still runs.
var errLoadBusy = errors.New("the previous load of the file, abandoned at its deadline, has not ended yet")

// load reads and checks the configuration file (the defaults without
// one), with its hash. Parsing cannot be interrupted, so it runs on a
// goroutine of its own that load stops waiting for when ctx ends or
// timeout passes (0: no timeout). Nothing waits for such an abandoned
// parse, not even a stop: config's bounds (size, nodes, depth) make it
// end on its own, its result is dropped, and only one runs at a time.
func (d *Daemon) load(ctx context.Context, timeout time.Duration) (*config.Config, [sha256.Size]byte, error) {
	var none [sha256.Size]byte
	path := d.opts.ConfigPath
	if path == "" {
		return config.Default(), none, nil
	}
	if !d.loading.CompareAndSwap(false, true) {
		return nil, none, fmt.Errorf("%s: %w", path, errLoadBusy)
	}
	type result struct {
		cfg *config.Config
		sum [sha256.Size]byte
		err error
	}
	done := make(chan result, 1) // never blocks an abandoned parse
	go func() {
		defer d.loading.Store(false)
		var r result
		data, err := config.ReadFile(path)
		if err == nil {
			r.sum = sha256.Sum256(data)
			r.cfg, err = config.Parse(path, data)
		}
		r.err = err
		done <- r
	}()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case r := <-done:
		return r.cfg, r.sum, r.err
	case <-expired:
		return nil, none, fmt.Errorf("%s: reading and checking the file took longer than %s", path, timeout)
	case <-ctx.Done():
		return nil, none, ctx.Err()
	}
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

// listen opens a listener on each address and records them under name; on
// error it closes the ones it opened.
func (d *Daemon) listen(name string, addrs []string) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("%s %s: %w", name, a, err)
		}
		out = append(out, l)
	}
	for _, l := range out {
		d.addrs[name] = append(d.addrs[name], l.Addr().String())
	}
	return out, nil
}

// serve runs one listener's serving loop. The first loop that fails stops
// serve; the report never blocks, and shutdown waits for every loop.
func (d *Daemon) serve(loop func() error) {
	d.serving.Add(1)
	go func() {
		defer d.serving.Done()
		if err := loop(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			select {
			case d.failed <- err:
			default:
			}
		}
	}()
}

func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		closers  []func(context.Context) error
		reloader sync.WaitGroup
	)
	shutdown := func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), d.opts.ShutdownGrace)
		defer scancel()
		waitUntil(sctx, &reloader) // a reload in progress ends with ctx
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](sctx); err != nil {
				d.log.Warn("shutdown", "error", err)
			}
		}
		if !waitUntil(sctx, &d.serving) {
			d.log.Warn("shutdown: listeners still serving after the grace period")
		}
		if d.store != nil { // after every role and listener: they use it
			d.store.Close()
		}
		if d.certs != nil {
			d.certs.Close()
		}
	}
	if err := d.openStore(ctx); err != nil {
		return err
	}
	if err := d.openMail(); err != nil {
		shutdown()
		return &ConfigError{Err: err}
	}
	var names []string
	for _, rt := range roleTypes {
		if !d.roleOn(rt.name, d.cfg) {
			continue
		}
		r, err := rt.start(ctx, d, d.cfg)
		if r != nil {
			d.roles = append(d.roles, r)
			closers = append(closers, r.shutdown)
		}
		if err != nil {
			shutdown()
			return err
		}
		names = append(names, rt.name)
	}
	if d.roleOn("admin", d.cfg) {
		srv, err := d.startAdmin(d.cfg.Admin.Listen)
		if err != nil {
			shutdown()
			return err
		}
		closers = append(closers, srv.Shutdown)
	}
	for _, name := range []string{"host-https", "host-http", "resolver", "web", "web-https", "reports-smtp", "admin"} {
		for _, a := range d.addrs[name] {
			d.log.Info("listening", "listener", name, "addr", a)
		}
	}
	for _, u := range webURLs(d.addrs) {
		d.log.Info("web checker ready", "url", u)
	}
	d.log.Info("mailtls serve started", "config", d.opts.ConfigPath, "roles", names)
	if d.opts.Ready != nil {
		d.opts.Ready(d.addrs)
	}
	// Reloads run beside this loop, never on it: a slow or hostile file
	// never delays a stop.
	reloader.Add(1)
	go func() {
		defer reloader.Done()
		d.reloader(ctx)
	}()
	select {
	case <-ctx.Done():
		d.log.Info("shutting down", "grace", d.opts.ShutdownGrace.String())
		shutdown()
		d.log.Info("stopped")
		return nil
	case err := <-d.failed:
		d.log.Error("a listener failed; shutting down", "error", err)
		shutdown()
		return err
	}
}

// waitUntil waits for wg until ctx ends; it reports whether wg finished.
func waitUntil(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// reloader reloads on SIGHUP and when the file's content changes, until
// ctx ends.
func (d *Daemon) reloader(ctx context.Context) {
	var watch <-chan time.Time
	if d.opts.WatchInterval > 0 && d.opts.ConfigPath != "" {
		t := time.NewTicker(d.opts.WatchInterval)
		defer t.Stop()
		watch = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
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
	if d.opts.ConfigPath == "" {
		return nil
	}
	next, sum, err := d.load(ctx, d.opts.LoadTimeout)
	if ctx.Err() != nil {
		return ctx.Err() // stopping
	}
	if errors.Is(err, errLoadBusy) {
		// Not a verdict on the file: the watcher tries it again (its
		// hash is not recorded), and so does the next SIGHUP.
		d.log.Warn("reload postponed", "why", why, "error", err)
		return err
	}
	if sum == ([sha256.Size]byte{}) {
		if data, rerr := config.ReadFile(d.opts.ConfigPath); rerr == nil {
			sum = sha256.Sum256(data)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fileHash = sum // a bad file is not tried again until it changes
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
// (listeners, storage, ACME account, log format, turning a role on or
// off) is kept and reported.
func (d *Daemon) apply(ctx context.Context, next *config.Config) error {
	var restart []string
	if next.Admin.Listen != d.cfg.Admin.Listen {
		restart = append(restart, "admin.listen")
	}
	if next.Log.Format != d.cfg.Log.Format {
		restart = append(restart, "log.format")
	}
	if next.Store != d.cfg.Store {
		restart = append(restart, "store")
	}
	if fmt.Sprint(next.Mail) != fmt.Sprint(d.cfg.Mail) {
		restart = append(restart, "mail")
	}
	for _, rt := range roleTypes {
		if d.roleOn(rt.name, next) != d.roleOn(rt.name, d.cfg) {
			restart = append(restart, rt.name+" (turning the role on or off)")
		}
	}
	for _, r := range d.roles {
		for _, k := range r.restartNeeded(next) {
			if !slices.Contains(restart, k) { // web and the worker share a section
				restart = append(restart, k)
			}
		}
		if err := r.apply(ctx, next); err != nil {
			return err
		}
	}
	d.level.Set(parseLevel(next.Log.Level))
	if len(restart) > 0 {
		d.log.Warn("these settings changed but take effect only after a restart", "keys", restart)
	}
	d.cfg = next
	return nil
}

// healthz is the admin status: "ok", or "degraded" when a role has
// something that needs attention (the lines below say what). It answers
// 200 either way: the process is up and serving.
func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	degraded := false
	if d.store != nil && d.storeHealth(r.Context(), &b) {
		degraded = true
	}
	for _, r := range d.roles { // set at start, never changed
		if r.health(&b, d.opts.Now()) {
			degraded = true
		}
	}
	status := "ok\n"
	if degraded {
		status = "degraded\n"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, status)
	w.Write(b.Bytes())
}

func (d *Daemon) startAdmin(addr string) (*http.Server, error) {
	ls, err := d.listen("admin", []string{addr})
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.healthz)
	mux.Handle("GET /metrics", promhttpHandler(d.reg))
	for _, r := range d.roles {
		if ar, ok := r.(adminRouter); ok {
			ar.routes(mux)
		}
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
	d.serve(func() error { return srv.Serve(ls[0]) })
	return srv, nil
}

// RoleNames are the roles serve --roles can name, in start order.
func RoleNames() []string {
	var out []string
	for _, rt := range roleTypes {
		out = append(out, rt.name)
	}
	return append(out, "admin")
}

// configured reports whether c has what role name needs.
func configured(name string, c *config.Config) bool {
	if name == "admin" {
		return c.Admin.Listen != "off"
	}
	for _, rt := range roleTypes {
		if rt.name == name {
			return rt.on(c)
		}
	}
	return false
}

// roleOn reports whether role name runs under c: configured, and named
// by --roles when that was given.
func (d *Daemon) roleOn(name string, c *config.Config) bool {
	return configured(name, c) && (d.opts.Roles == nil || slices.Contains(d.opts.Roles, name))
}

// checkRoles refuses a --roles list naming an unknown role, or a role the
// configuration does not set up: an instance started for a role must run
// it, not start quietly without it.
func checkRoles(roles []string, c *config.Config) error {
	if roles == nil {
		return nil
	}
	if len(roles) == 0 {
		return fmt.Errorf("--roles: name at least one of %s", strings.Join(RoleNames(), ", "))
	}
	for _, r := range roles {
		switch {
		case !slices.Contains(RoleNames(), r):
			return fmt.Errorf("--roles: unknown role %q (the roles are %s)", r, strings.Join(RoleNames(), ", "))
		case r == "admin" && !configured(r, c):
			return fmt.Errorf("--roles: admin is named but admin.listen is \"off\"")
		case r == "worker" && !configured(r, c):
			return fmt.Errorf("--roles: the worker scans with the web section's scanner settings; the configuration has no web: section")
		case !configured(r, c):
			return fmt.Errorf("--roles: %s is named but the configuration has no %s: section", r, r)
		}
	}
	return nil
}
