package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/account"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/policyhost"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/web"
)

// webRole is the web checker: its listeners, the scan jobs and the
// janitor that deletes expired results.
type webRole struct {
	srv      *http.Server
	jobs     *scanjob.Manager
	accounts *account.Service // nil without a store
	stop     context.CancelFunc
	janitor  sync.WaitGroup
	cfg      *config.Web
	acme     *policyhost.ACME // web.tls.acme; nil otherwise
}

// webScanner is how the web role and the worker scan (web.scanner): the
// resolvers, and the SSRF guard letting through public addresses on ports
// 25 and 443 only, unless the configuration lets private targets through
// (allow, which webhook deliveries honour as well).
func webScanner(d *Daemon, c *config.Web) (web.ScannerOptions, []netip.Prefix, error) {
	var res Resolver = d.opts.WebResolver
	if res == nil {
		servers := c.Scanner.Resolvers
		if len(servers) == 0 {
			s, err := resolve.SystemServers(d.opts.ResolvConf)
			if err != nil {
				return web.ScannerOptions{}, nil, fmt.Errorf("web: the scanner needs a DNS resolver: %v (set web.scanner.resolvers)", err)
			}
			servers = s
		}
		res = &resolve.Client{Servers: servers, TrustAD: resolve.IsLoopbackServer}
	}
	var allow []netip.Prefix
	if c.Scanner.AllowPrivateTargets {
		allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	for _, p := range c.Scanner.AllowNetworks {
		allow = append(allow, netip.MustParsePrefix(p)) // validated by config
	}
	dialer := &dial.Dialer{Guard: dial.NewGuard(allow...), Net: d.opts.WebNet}
	return web.ScannerOptions{Resolver: res, Dialer: dialer, Roots: d.opts.WebRoots, Now: d.opts.Now,
		EHLO: c.Scanner.EHLO, SMTPTimeout: c.Scanner.SMTPTimeout.D()}, allow, nil
}

// startWeb opens the web checker's listeners and serves. On error it
// returns what it started so that the caller can shut it down.
func startWeb(ctx context.Context, d *Daemon, cfg *config.Config) (role, error) {
	c := cfg.Web
	so, allow, err := webScanner(d, c)
	if err != nil {
		return nil, err
	}
	sc := web.NewScanner(so)
	l := c.Limits
	perMinute := rate.Limit(l.ScansPerMinute / 60)
	if l.ScansPerMinute < 0 {
		perMinute = -1
	}
	// Anonymous scans live in memory, unless instances share a
	// PostgreSQL store: then any instance serves any scan and streams its
	// progress (docs/scaling.md, "Live scan progress").
	var results scanjob.Store
	if d.store != nil && d.store.Engine() == sqlstore.Postgres.Name {
		as, err := d.store.AnonScans(ctx)
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		results = scanjob.NewShared(as)
	}
	jobs := scanjob.New(scanjob.Config{
		Workers: l.ConcurrentScans, Queue: l.Queue, Timeout: c.Scanner.Timeout.D(), TTL: l.ResultTTL.D(), Reuse: l.Reuse.D(),
		PerClientRate: perMinute, PerClientBurst: l.ScanBurst, PerClientConcurrent: l.ConcurrentPerClient, Now: d.opts.Now,
	}, web.NewScanFunc(sc, d.opts.Now), results, d.log.With("role", "web"), scanjob.NewMetrics(d.reg))
	ws := &web.Server{Jobs: jobs, Log: d.log.With("role", "web"), EHLOName: c.Scanner.EHLO,
		MaxStreamsPerClient: l.StreamsPerClient, Metrics: web.NewMetrics(d.reg)}
	if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme == "https" || len(c.ListenHTTPS) > 0 {
		ws.TLS = true
	}
	// Behind a proxy that rewrites Host, a browser's Origin is the public
	// address: form posts from it are same-site.
	ws.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	for _, p := range c.TrustedProxies {
		ws.TrustedProxies = append(ws.TrustedProxies, netip.MustParsePrefix(p))
	}
	jctx, stop := context.WithCancel(context.Background())
	r := &webRole{jobs: jobs, stop: stop, cfg: c}
	r.srv = &http.Server{
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		ReadTimeout:       l.ReadTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return jctx },
	}
	r.janitor.Add(1)
	go func() { defer r.janitor.Done(); jobs.Janitor(jctx, time.Minute) }()

	tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if len(c.ListenHTTPS) > 0 && c.TLS.ACME == nil {
		cert, err := loadKeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			return r, &ConfigError{Err: fmt.Errorf("web.tls: %w", err)}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	lns, err := d.listen("web", c.Listen)
	if err != nil {
		return r, fmt.Errorf("web listener: %w", err)
	}
	secure, err := d.listen("web-https", c.ListenHTTPS)
	if err != nil {
		closeListeners(lns)
		return r, fmt.Errorf("web listener: %w", err)
	}
	if c.TLS.ACME != nil {
		if r.acme, err = newWebACME(ctx, d, cfg, secure, lns); err != nil {
			closeListeners(append(lns, secure...))
			return r, err
		}
		name := c.ACMEHost()
		r.acme.SyncHosts(ctx, map[string]bool{name: false})
		tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if !strings.EqualFold(strings.TrimSuffix(hello.ServerName, "."), name) {
				// (nil, nil): the unrecognized_name alert (RFC 6066 §3),
				// not internal_error.
				return nil, nil
			}
			return r.acme.GetCertificate(hello.Context(), hello)
		}
		// TLS-ALPN-01 (RFC 8737): chosen only when a validator offers it.
		tc.NextProtos = append(tc.NextProtos, "acme-tls/1")
	}
	for _, ln := range secure {
		lns = append(lns, tls.NewListener(ln, tc))
	}
	if d.store != nil {
		r.accounts = newAccounts(d, c, lns)
		ws.Accounts, ws.Store, ws.PublicURL, ws.Now = r.accounts, d.store, c.PublicURL, d.opts.Now
		ws.SessionIdleTimeout, ws.SessionLifetime = c.Accounts.SessionIdleTimeout.D(), c.Accounts.SessionLifetime.D()
		// The pages and API of saved domains, with this server's users
		// (sessions and API tokens).
		// "Rescan now" wakes this process's worker; a worker in another
		// instance finds the request at its next look at the store.
		ws.Monitor = &web.Monitoring{Store: d.store, Users: ws, Now: d.opts.Now, BaseURL: c.PublicURL,
			WebhookGuard: dial.NewGuardPorts(dial.WebhookPorts, allow...), Poke: d.pokeWorker, Resolver: so.Resolver}
	}
	// The handler is made once ws is complete: the TLS-RPT intake in
	// front, and ACME's HTTP-01 answers in front of that.
	h := d.withReports(ws.Handler())
	if r.acme != nil {
		h = r.acme.HTTPHandler(h)
	}
	r.srv.Handler = h
	for _, ln := range lns {
		d.serve(func() error { return r.srv.Serve(ln) })
	}
	return r, nil
}

// newWebACME sets up ACME (certmagic) for the certificate of the web
// checker's public name; our own listeners answer the challenges.
func newWebACME(ctx context.Context, d *Daemon, cfg *config.Config, https, plain []net.Listener) (*policyhost.ACME, error) {
	c := cfg.Web
	a := c.TLS.ACME
	var roots *x509.CertPool
	if f := a.TrustedRoots; f != "" {
		pem, err := config.ReadLimited(f, policyhost.MaxCertFileSize)
		if err != nil {
			return nil, &ConfigError{Err: fmt.Errorf("web.tls.acme.trusted_roots: %w", err)}
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Err: fmt.Errorf("web.tls.acme.trusted_roots: %s holds no PEM certificate", f)}
		}
	}
	host := listenHost(https)
	if h := listenHost(plain); len(plain) > 0 && h != host {
		host = ""
	}
	o := policyhost.ACMEOptions{
		CA: a.CA, Email: a.Email, Challenges: a.Challenges, TrustedRoots: roots, Storage: c.TLS.Storage,
		HTTPPort: port(plain), TLSPort: port(https), ListenHost: host,
		Log: d.log.With("role", "web", "part", "acme"), Metrics: d.m,
	}
	if err := withCertStorage(ctx, d, cfg, &o); err != nil {
		return nil, err
	}
	m, err := policyhost.NewACME(o)
	if err != nil {
		return nil, fmt.Errorf("web.tls.acme: %w", err)
	}
	return m, nil

}

// newAccounts makes the account service of the web role. Links in mails
// point at web.public_url, else at the first listener: never at a
// request's Host header, which the client chooses.
func newAccounts(d *Daemon, c *config.Web, lns []net.Listener) *account.Service {
	base := c.PublicURL
	if base == "" && len(lns) > 0 {
		scheme := "http" // plain listeners come first
		if len(c.Listen) == 0 {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(lns[0].Addr().String())
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			host = "localhost"
		}
		base = scheme + "://" + net.JoinHostPort(host, port)
	}
	return account.New(account.Config{Store: d.store, Mail: d.mail, BaseURL: base, Registration: c.Accounts.Registration,
		Now: d.opts.Now, Log: d.log.With("role", "web", "component", "accounts")})
}

// loadKeyPair loads a certificate and its key, each read with the cap of
// certificate files.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := config.ReadLimited(certFile, policyhost.MaxCertFileSize)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := config.ReadLimited(keyFile, policyhost.MaxCertFileSize)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func closeListeners(lns []net.Listener) {
	for _, l := range lns {
		l.Close()
	}
}

// shutdown stops the listeners (requests in flight finish, event streams
// end with the context), then the scans and the janitor.
func (r *webRole) shutdown(ctx context.Context) error {
	r.stop() // ends event streams, waiting pages and the janitor
	err := r.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	err = errors.Join(err, r.jobs.Close(ctx))
	if r.accounts != nil {
		// Mails already promised (a verification link) go out first.
		err = errors.Join(err, r.accounts.Close(ctx))
	}
	if r.acme != nil {
		r.acme.Close()
	}
	r.janitor.Wait()
	return err
}

// restartNeeded lists web settings that changed and need a restart: the
// role is built once.
func (r *webRole) restartNeeded(next *config.Config) []string {
	if next.Web != nil && !reflect.DeepEqual(next.Web, r.cfg) {
		return []string{"web"}
	}
	return nil
}

// apply changes nothing: every web setting takes a restart (restartNeeded
// says so).
func (r *webRole) apply(context.Context, *config.Config) error { return nil }

// health reports the scans running and queued.
func (r *webRole) health(w io.Writer, _ time.Time) bool {
	queued, running := r.jobs.Counts()
	fmt.Fprintf(w, "web: %d scans running, %d queued\n", running, queued)
	return false
}

// urls are the addresses to open the checker at, for the log.
func webURLs(addrs map[string][]string) []string {
	var out []string
	for _, scheme := range []string{"web", "web-https"} {
		for _, a := range addrs[scheme] {
			host, port, _ := net.SplitHostPort(a)
			if host == "" || host == "::" || host == "0.0.0.0" {
				host = "localhost"
			}
			s := "http"
			if scheme == "web-https" {
				s = "https"
			}
			out = append(out, s+"://"+net.JoinHostPort(strings.Trim(host, "[]"), port)+"/")
		}
	}
	return out
}
