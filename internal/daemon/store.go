package daemon

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// openStore opens the store the configuration names: the PostgreSQL
// database of store.url (or a postgres:// store.path), else the SQLite
// file of store.path (default: the data directory's). Errors name the
// store, without a password.
func openStore(ctx context.Context, c config.Store, getenv func(string) string, uid int, o sqlstore.Options) (*sqlstore.DB, error) {
	if u := c.Postgres(); u != "" {
		db, err := sqlstore.OpenPostgres(ctx, u, o)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", sqlstore.Redact(u), err)
		}
		if o.Logger != nil {
			o.Logger.Info("store open", "postgres", sqlstore.Redact(u))
		}
		return db, nil
	}
	path := c.Path
	if path == "" {
		path = sqlstore.DefaultPath(getenv, uid)
	}
	db, err := sqlstore.Open(ctx, path, o)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	if o.Logger != nil {
		o.Logger.Info("store open", "path", path)
	}
	return db, nil
}

// storeOpened publishes the open store to /healthz and, on PostgreSQL,
// its connection pool (this instance's) to /metrics.
func (d *Daemon) storeOpened(db *sqlstore.DB) {
	d.dbOpen.Store(db)
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

// storeHealth writes the store's line of /healthz.
func (d *Daemon) storeHealth(w io.Writer) {
	db := d.dbOpen.Load()
	if db == nil {
		return
	}
	s, ok := db.PoolStats()
	if !ok {
		fmt.Fprintf(w, "store: %s\n", db.Engine())
		return
	}
	fmt.Fprintf(w, "store: postgres, %d of %d connection(s) in use, %d open; %d of %d acquisition(s) waited\n",
		s.AcquiredConns, s.MaxConns, s.TotalConns, s.EmptyAcquireCount, s.AcquireCount)
}
