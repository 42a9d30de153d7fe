package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// needsStore reports whether a role that keeps data (accounts, saved
// domains, TLS-RPT reports; the policy host's ids with store: set) runs.
func (d *Daemon) needsStore(c *config.Config) bool {
	return d.roleOn("web", c) || d.roleOn("worker", c) || d.roleOn("reports", c) ||
		(d.roleOn("host", c) && sharedHostState(c))
}

// StorePath is the database of a configuration: store (a file or a
// postgres:// URL), or mailtls.db in the data directory.
func StorePath(c *config.Config, getenv func(string) string) string {
	if c.Store != "" {
		return c.Store
	}
	return sqlstore.DefaultPath(getenv, os.Getuid())
}

// openStore opens and migrates the database when a role needs it (it is
// created, with its directory, on first use). It is closed after the
// roles at shutdown.
func (d *Daemon) openStore(ctx context.Context) error {
	if !d.needsStore(d.cfg) {
		return nil
	}
	path := StorePath(d.cfg, d.opts.Getenv)
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	o := sqlstore.Options{Now: d.opts.Now, Logger: d.log.With("component", "store")}
	var db *sqlstore.DB
	var err error
	if config.IsPostgresURL(path) {
		// Shared by several instances (docs/scaling.md). Logs and
		// /healthz name it without its password.
		path = sqlstore.Redact(path)
		db, err = sqlstore.OpenPostgres(octx, d.cfg.Store, o)
	} else {
		db, err = sqlstore.Open(octx, path, o)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	d.store, d.storePath = db, path
	d.storeMetrics(db)
	v, _ := db.SchemaVersion(ctx)
	d.log.Info("store open", "store", path, "schema", v)
	return nil
}

// storeMetrics publishes this instance's connection pool to PostgreSQL
// on /metrics (a SQLite store has none).
func (d *Daemon) storeMetrics(db *sqlstore.DB) {
	if _, ok := db.PoolStats(); !ok {
		return
	}
	stat := func(f func(sqlstore.PoolStats) float64) func() float64 {
		return func() float64 {
			s, _ := db.PoolStats()
			return f(s)
		}
	}
	d.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailtls_store_pool_max_conns",
			Help: "The most connections this instance opens to the PostgreSQL store."},
			stat(func(s sqlstore.PoolStats) float64 { return float64(s.MaxConns) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailtls_store_pool_conns",
			Help: "Connections open to the PostgreSQL store."},
			stat(func(s sqlstore.PoolStats) float64 { return float64(s.TotalConns) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailtls_store_pool_acquired_conns",
			Help: "Connections in use by a query or transaction."},
			stat(func(s sqlstore.PoolStats) float64 { return float64(s.AcquiredConns) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_store_pool_acquires_total",
			Help: "Connections taken from the pool."},
			stat(func(s sqlstore.PoolStats) float64 { return float64(s.AcquireCount) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_store_pool_waits_total",
			Help: "Connections taken after waiting, the pool being empty (raise pool_max_conns if this grows)."},
			stat(func(s sqlstore.PoolStats) float64 { return float64(s.EmptyAcquireCount) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_store_pool_wait_seconds_total",
			Help: "Time spent waiting for a connection."},
			stat(func(s sqlstore.PoolStats) float64 { return s.AcquireWait.Seconds() })),
	)
}

// storeHealth writes the store's line of /healthz; a database that does
// not answer needs attention.
func (d *Daemon) storeHealth(ctx context.Context, w io.Writer) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := d.store.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintf(w, "store: %s: not answering: %v\n", d.storePath, err)
		return true
	}
	fmt.Fprintf(w, "store: %s, schema version %d\n", d.storePath, v)
	if p, ok := d.store.PoolStats(); ok {
		fmt.Fprintf(w, "store: postgres, %d of %d connection(s) in use, %d open; %d of %d acquisition(s) waited\n",
			p.AcquiredConns, p.MaxConns, p.TotalConns, p.EmptyAcquireCount, p.AcquireCount)
	}
	return false
}

// openMail makes the sender of the server's own mail: the configured
// relay, or the log when there is none.
func (d *Daemon) openMail() error {
	c := d.cfg.Mail
	if c == nil {
		d.mail = mail.Log{Logger: d.log.With("component", "mail")}
		if d.cfg.Web != nil {
			d.log.Warn("no mail relay configured (mail:): verification and password reset mails are written to this log")
		}
		return nil
	}
	r := c.RelayConfig()
	pw, err := c.RelayPassword()
	if err != nil {
		return fmt.Errorf("mail.password_file: %w", err)
	}
	r.Password, r.RootCAs, r.Now = pw, d.opts.MailRoots, d.opts.Now
	d.mail = r
	return nil
}
