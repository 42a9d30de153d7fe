package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/internal/certstorage"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// certStorageOpenTimeout bounds connecting to PostgreSQL and migrating
// the certificate tables at start.
const certStorageOpenTimeout = 30 * time.Second

// postgresStore returns the store's PostgreSQL URL when store is one,
// else "" (a SQLite file).
func postgresStore(c *config.Config) string {
	if config.IsPostgresURL(c.Store) {
		return c.Store
	}
	return ""
}

// certStorage returns the ACME storage shared by every instance on the
// same PostgreSQL database when the store is PostgreSQL, opened once for
// the host and web roles and closed by run after every role has stopped;
// nil means each role keeps its certificates in its storage folder.
// Changing the store needs a restart (apply says so).
func (d *Daemon) certStorage(ctx context.Context, c *config.Config) (*certstorage.Postgres, error) {
	u := postgresStore(c)
	if u == "" {
		return nil, nil
	}
	d.certsOnce.Do(func() {
		octx, cancel := context.WithTimeout(ctx, certStorageOpenTimeout)
		defer cancel()
		d.certs, d.certsErr = certstorage.Open(octx, u, certstorage.Options{Log: d.log.With("part", "certstorage")})
		if d.certsErr != nil {
			d.certsErr = fmt.Errorf("store %s: certificate storage: %w", sqlstore.Redact(u), d.certsErr)
		} else {
			d.log.Info("certificates shared through PostgreSQL", "store", sqlstore.Redact(u))
			d.registerCertStorageMetrics(d.certs)
		}
	})
	return d.certs, d.certsErr
}

// registerCertStorageMetrics exports the lock counts of this instance: a
// takeover means an instance died or stalled holding a lock, a lost lease
// that this one stalled (docs/scaling.md, "Certificates").
func (d *Daemon) registerCertStorageMetrics(s *certstorage.Postgres) {
	stat := func(f func(certstorage.Stats) float64) func() float64 {
		return func() float64 { return f(s.Stats()) }
	}
	d.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailtls_certstorage_locks_held",
			Help: "certmagic locks (issuance, renewal, account) this instance holds in the PostgreSQL store."},
			stat(func(st certstorage.Stats) float64 { return float64(st.Held) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_certstorage_locks_acquired_total",
			Help: "certmagic locks this instance took."},
			stat(func(st certstorage.Stats) float64 { return float64(st.Acquired) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_certstorage_lock_takeovers_total",
			Help: "Locks this instance took over from a holder whose lease had expired (it died or stalled)."},
			stat(func(st certstorage.Stats) float64 { return float64(st.TakenOver) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailtls_certstorage_leases_lost_total",
			Help: "Locks of this instance taken over by another after its lease expired (this instance stalled)."},
			stat(func(st certstorage.Stats) float64 { return float64(st.Lost) })),
	)
}
