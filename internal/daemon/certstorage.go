package daemon

import (
	"context"
	"fmt"
	"time"

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
		}
	})
	return d.certs, d.certsErr
}
