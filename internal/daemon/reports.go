package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrptintake"
)

// reportsRole takes TLS-RPT reports in (docs/reports.md): the HTTPS POST
// path on the host and web listeners, the SMTP listener, the IMAP
// mailboxes, and the janitor that applies retention.
type reportsRole struct {
	d          *Daemon
	cfg        *config.Config
	intake     *tlsrptintake.Intake
	configured atomic.Pointer[map[string]bool]
	retention  atomic.Pointer[config.ReportsRetain]
	smtp       *tlsrptintake.SMTPServer
	imap       []*tlsrptintake.IMAPPuller
	stop       context.CancelFunc
	bg         sync.WaitGroup
}

// janitorInterval is how often retention is applied.
const janitorInterval = time.Hour

func startReports(ctx context.Context, d *Daemon, c *config.Config) (role, error) {
	rc := c.Reports
	db := d.store // opened by run: needsStore
	var res resolve.Resolver = d.opts.Resolver
	if res == nil {
		servers := rc.Resolvers
		if len(servers) == 0 {
			s, err := resolve.SystemServers(d.opts.ResolvConf)
			if err != nil {
				return nil, fmt.Errorf("reports: DKIM keys need a DNS resolver: %v (set reports.resolvers)", err)
			}
			servers = s
		}
		res = &resolve.Client{Servers: servers}
	}
	r := &reportsRole{d: d, cfg: c}
	r.setConfigured(c)
	ret := rc.Retention
	r.retention.Store(&ret)
	r.intake = &tlsrptintake.Intake{Store: db, Resolver: res, Log: d.log.With("role", "reports"),
		Metrics: tlsrptintake.NewMetrics(d.reg), Configured: func(dom string) bool { return (*r.configured.Load())[dom] }}
	if rc.HTTPS.Path != "off" {
		h := &tlsrptintake.HTTPHandler{Intake: r.intake, MaxBody: rc.HTTPS.MaxBytes, PerMinute: rc.HTTPS.PostsPerMinute, Burst: rc.HTTPS.Burst}
		d.reportsHTTPS.Store(&route{path: rc.HTTPS.Path, h: h})
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	if s := rc.SMTP; s != nil {
		tc, err := r.smtpTLS(c)
		if err != nil {
			cancel()
			return r, &ConfigError{Err: err}
		}
		r.smtp = tlsrptintake.NewSMTPServer(r.intake, tlsrptintake.SMTPConfig{Hostname: s.Hostname, Addresses: s.Addresses, TLS: tc,
			MaxMessageBytes: s.MaxMessageBytes, MessagesPerMinute: s.MessagesPerMinute, Burst: s.Burst,
			MaxConns: s.MaxConns, MaxConnsPerIP: s.MaxConnsPerIP, Timeout: s.Timeout.D()})
		lns, err := d.listen("reports-smtp", s.Listen)
		if err != nil {
			cancel()
			return r, fmt.Errorf("reports.smtp.listen: %w", err)
		}
		for _, l := range lns {
			d.serve(func() error { return r.smtp.Serve(l) })
		}
	}
	for _, m := range rc.IMAP {
		p, err := r.newIMAP(m)
		if err != nil {
			cancel()
			return r, &ConfigError{Err: err}
		}
		r.imap = append(r.imap, p)
		r.bg.Add(1)
		go func() { defer r.bg.Done(); p.Run(wctx) }()
	}
	r.bg.Add(1)
	go func() { defer r.bg.Done(); r.janitor(wctx) }()
	return r, nil
}

// route is the HTTPS intake's path and handler.
type route struct {
	path string
	h    http.Handler
}

// reportsHandler is the host and web listeners' way to the HTTPS intake:
// the handler for r's path, or nil.
func (d *Daemon) reportsHandler(r *http.Request) http.Handler {
	if rt := d.reportsHTTPS.Load(); rt != nil && r.URL.Path == rt.path {
		return rt.h
	}
	return nil
}

// withReports puts the HTTPS intake in front of h.
func (d *Daemon) withReports(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rh := d.reportsHandler(r); rh != nil {
			rh.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// smtpTLS is the STARTTLS configuration: static files, or the host
// role's certificate for the name the sender asks for (SNI) when it is
// hosted, else for reports.smtp.hostname.
func (r *reportsRole) smtpTLS(c *config.Config) (*tls.Config, error) {
	s := c.Reports.SMTP
	if s.TLS.Cert != "" {
		cert, err := loadKeyPair(s.TLS.Cert, s.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("reports.smtp.tls: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	var host *hostRole
	for _, ro := range r.d.roles {
		if h, ok := ro.(*hostRole); ok {
			host = h
		}
	}
	if host == nil {
		return nil, errors.New("reports.smtp: STARTTLS needs the host role's certificates or reports.smtp.tls")
	}
	get := host.srv.TLSConfig().GetCertificate
	name := strings.TrimSuffix(s.Hostname, ".")
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		h := *hello
		if h.ServerName == "" || host.srv.Sites().Lookup(h.ServerName) == nil {
			h.ServerName = name
		}
		return get(&h)
	}}, nil
}

func (r *reportsRole) setConfigured(c *config.Config) {
	m := c.ReportDomains()
	r.configured.Store(&m)
}

// janitor makes the held reports of configured domains count (at start
// and after a reload) and applies retention every hour.
func (r *reportsRole) janitor(ctx context.Context) {
	r.release(ctx)
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		r.prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *reportsRole) release(ctx context.Context) {
	doms := *r.configured.Load()
	names := make([]string, 0, len(doms))
	for d := range doms {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		n, err := r.intake.Store.ReleaseHeldTLSRPT(ctx, d)
		if err != nil {
			if ctx.Err() == nil {
				r.d.log.Error("releasing held TLS-RPT reports", "domain", d, "error", err)
			}
			return
		}
		if n > 0 {
			r.d.log.Info("held TLS-RPT reports now count", "domain", d, "reports", n)
		}
	}
}

// prune applies the reports' retention only: every other setting of
// store.Retention is negative ("keep"), so the accounts' own janitor
// keeps its say over scans and messages.
func (r *reportsRole) prune(ctx context.Context) {
	ret := r.retention.Load()
	db, ok := r.intake.Store.(store.Maintenance)
	if !ok {
		return
	}
	st, err := db.Prune(ctx, store.Retention{FullScans: -1, Scans: -1, StaleScan: -1, Outbox: -1, UsedTokens: -1,
		TLSRPTRaw: ret.Raw.D(), TLSRPTReports: ret.Reports.D()})
	if err != nil {
		if ctx.Err() == nil {
			r.d.log.Error("TLS-RPT retention", "error", err)
		}
		return
	}
	if st.TLSRPTRaw+st.TLSRPTReports > 0 {
		r.d.log.Info("TLS-RPT retention", "raw_removed", st.TLSRPTRaw, "reports_deleted", st.TLSRPTReports)
	}
}

// restartNeeded lists the reports settings only a restart applies.
func (r *reportsRole) restartNeeded(next *config.Config) []string {
	var out []string
	cur, nr := r.cfg.Reports, next.Reports
	if nr == nil {
		return nil
	}
	if fmt.Sprintf("%+v", cur.HTTPS) != fmt.Sprintf("%+v", nr.HTTPS) {
		out = append(out, "reports.https")
	}
	if fmt.Sprintf("%+v", cur.SMTP) != fmt.Sprintf("%+v", nr.SMTP) {
		out = append(out, "reports.smtp")
	}
	if fmt.Sprintf("%+v", cur.IMAP) != fmt.Sprintf("%+v", nr.IMAP) {
		out = append(out, "reports.imap")
	}
	if !slices.Equal(cur.Resolvers, nr.Resolvers) {
		out = append(out, "reports.resolvers")
	}
	return out
}

// apply takes the new configured domains (reports.domains and the host's)
// and retention; held reports of newly configured domains count.
func (r *reportsRole) apply(ctx context.Context, next *config.Config) error {
	if next.Reports == nil {
		return nil
	}
	before := *r.configured.Load()
	r.setConfigured(next)
	ret := next.Reports.Retention
	r.retention.Store(&ret)
	for d := range *r.configured.Load() {
		if !before[d] {
			r.bg.Add(1)
			go func() {
				defer r.bg.Done()
				cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				r.release(cctx)
			}()
			break
		}
	}
	return nil
}

// health reports the intake's state and the mailboxes' last rounds.
func (r *reportsRole) health(w io.Writer, now time.Time) bool {
	rc := r.cfg.Reports
	var parts []string
	if rc.HTTPS.Path != "off" {
		parts = append(parts, "https "+rc.HTTPS.Path)
	}
	if r.smtp != nil {
		parts = append(parts, "smtp")
	}
	fmt.Fprintf(w, "reports: %d configured domain(s), intake %s\n", len(*r.configured.Load()), strings.Join(append(parts, fmt.Sprintf("%d imap mailbox(es)", len(r.imap))), ", "))
	degraded := false
	for _, p := range r.imap {
		st := p.Status()
		switch {
		case st.LastError != "":
			degraded = true
			fmt.Fprintf(w, "reports: imap %s: last round failed %s ago: %s\n", p.Name(), now.Sub(st.LastAttempt).Round(time.Second), st.LastError)
		case !st.LastSuccess.IsZero():
			fmt.Fprintf(w, "reports: imap %s: last round %s ago, %d message(s) taken in all\n", p.Name(), now.Sub(st.LastSuccess).Round(time.Second), st.Processed)
		}
	}
	return degraded
}

// shutdown stops the SMTP listener (sessions in flight finish until ctx
// ends), the mailboxes and the janitor.
func (r *reportsRole) shutdown(ctx context.Context) error {
	if r.stop != nil {
		r.stop()
	}
	var err error
	if r.smtp != nil {
		err = r.smtp.Shutdown(ctx)
	}
	if !waitUntil(ctx, &r.bg) {
		err = errors.Join(err, errors.New("reports: the mailboxes did not stop in time"))
	}
	return err
}

// newIMAP makes the puller of one mailbox.
func (r *reportsRole) newIMAP(m config.ReportsIMAP) (*tlsrptintake.IMAPPuller, error) {
	pw, err := config.ReadLimited(m.PasswordFile, 4096)
	if err != nil {
		return nil, fmt.Errorf("reports.imap %s: %w", m.Server, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: r.d.opts.IMAPRoots}
	if m.CAFile != "" {
		pem, err := config.ReadLimited(m.CAFile, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("reports.imap %s: ca_file: %w", m.Server, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reports.imap %s: ca_file %s holds no PEM certificate", m.Server, m.CAFile)
		}
	}
	return tlsrptintake.NewIMAPPuller(r.intake, tlsrptintake.IMAPConfig{Server: m.Server, StartTLS: m.TLS == "starttls",
		Username: m.Username, Password: strings.TrimRight(string(pw), "\r\n"), Mailbox: m.Mailbox, Interval: m.Interval.D(),
		Keyword: m.Keyword, MoveTo: m.MoveTo, TLS: tc, Dial: r.d.opts.IMAPDial}), nil
}
