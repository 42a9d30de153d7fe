package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/scanjob"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/web"
)

// webRole is the web checker: its listeners, the scan jobs and the
// janitor that deletes expired results.
type webRole struct {
	srv  *http.Server
	jobs *scanjob.Manager
	stop context.CancelFunc
	cfg  *config.Web
}

// startWeb opens the web checker's listeners and serves. On error it
// returns what it started so that the caller can shut it down.
func startWeb(ctx context.Context, d *Daemon, c *config.Web, addrs map[string][]string, serveErr chan<- error) (*webRole, error) {
	var res scan.Resolver = d.opts.WebResolver
	if res == nil {
		servers := c.Scanner.Resolvers
		if len(servers) == 0 {
			s, err := resolve.SystemServers(d.opts.ResolvConf)
			if err != nil {
				return nil, fmt.Errorf("web: the scanner needs a DNS resolver: %v (set web.scanner.resolvers)", err)
			}
			servers = s
		}
		res = &resolve.Client{Servers: servers, TrustAD: resolve.IsLoopbackServer}
	}
	// The SSRF guard: public addresses on ports 25 and 443 only, unless
	// the configuration lets private targets through.
	var allow []netip.Prefix
	if c.Scanner.AllowPrivateTargets {
		allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	for _, p := range c.Scanner.AllowNetworks {
		allow = append(allow, netip.MustParsePrefix(p)) // validated by config
	}
	dialer := &dial.Dialer{Guard: dial.NewGuard(allow...), Net: d.opts.WebNet}
	smtpWait := c.Scanner.SMTPTimeout.D()
	sc := &scan.Scanner{
		Resolver: res,
		Fetcher:  &fetch.Fetcher{Dialer: dialer, Roots: d.opts.WebRoots, Now: d.opts.Now},
		Dialer:   dialer,
		Now:      d.opts.Now,
		Prober: &smtpprobe.Prober{Dialer: dialer, Roots: d.opts.WebRoots, Now: d.opts.Now, EHLO: c.Scanner.EHLO,
			ConnectTimeout: smtpWait, BannerTimeout: smtpWait, CommandTimeout: smtpWait, HandshakeTimeout: smtpWait},
	}
	l := c.Limits
	perMinute := rate.Limit(l.ScansPerMinute / 60)
	if l.ScansPerMinute < 0 {
		perMinute = -1
	}
	jobs := scanjob.New(scanjob.Config{
		Workers: l.ConcurrentScans, Queue: l.Queue, Timeout: c.Scanner.Timeout.D(), TTL: l.ResultTTL.D(), Reuse: l.Reuse.D(),
		PerClientRate: perMinute, PerClientBurst: l.ScanBurst, PerClientConcurrent: l.ConcurrentPerClient, Now: d.opts.Now,
	}, web.NewScanFunc(sc, d.opts.Now), nil, d.log.With("role", "web"), scanjob.NewMetrics(d.reg))
	ws := &web.Server{Jobs: jobs, Log: d.log.With("role", "web"), EHLOName: c.Scanner.EHLO,
		MaxStreamsPerClient: l.StreamsPerClient, Metrics: web.NewMetrics(d.reg)}
	if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme == "https" || len(c.ListenHTTPS) > 0 {
		ws.TLS = true
	}
	for _, p := range c.TrustedProxies {
		ws.TrustedProxies = append(ws.TrustedProxies, netip.MustParsePrefix(p))
	}
	jctx, stop := context.WithCancel(context.Background())
	r := &webRole{jobs: jobs, stop: stop, cfg: c}
	r.srv = &http.Server{
		Handler:           ws.Handler(),
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		ReadTimeout:       l.ReadTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return jctx },
	}
	go jobs.Janitor(jctx, time.Minute)

	var lns []net.Listener
	for _, a := range c.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeListeners(lns)
			return r, fmt.Errorf("web listener: %w", err)
		}
		lns = append(lns, ln)
		addrs["web"] = append(addrs["web"], ln.Addr().String())
	}
	if len(c.ListenHTTPS) > 0 {
		cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			closeListeners(lns)
			return r, fmt.Errorf("web.tls: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		for _, a := range c.ListenHTTPS {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				closeListeners(lns)
				return r, fmt.Errorf("web listener: %w", err)
			}
			addrs["web-https"] = append(addrs["web-https"], ln.Addr().String())
			lns = append(lns, tls.NewListener(ln, tc))
		}
	}
	for _, ln := range lns {
		go func() { serveErr <- r.srv.Serve(ln) }()
	}
	return r, nil
}

func closeListeners(lns []net.Listener) {
	for _, l := range lns {
		l.Close()
	}
}

// shutdown stops the listeners (requests in flight finish, event streams
// end with the context), then the scans.
func (r *webRole) shutdown(ctx context.Context) error {
	r.stop() // ends event streams and waiting pages
	err := r.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, r.jobs.Close(ctx))
}

// restartNeeded lists web settings that changed and need a restart: the
// role is built once.
func (r *webRole) restartNeeded(next *config.Web) []string {
	if fmt.Sprintf("%+v", *next) != fmt.Sprintf("%+v", *r.cfg) {
		return []string{"web"}
	}
	return nil
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
