package daemon

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/certstorage"
	"github.com/mailtls/mailtls/internal/config"
)

// certStorageOpenTimeout bounds connecting to PostgreSQL and migrating
// the certificate tables at start.
const certStorageOpenTimeout = 30 * time.Second

// postgresStore returns the store's PostgreSQL URL when store is one
// (postgres:// or postgresql://), else "" (a SQLite file).
func postgresStore(c *config.Config) string {
	p := c.Store
	if strings.HasPrefix(p, "postgres://") || strings.HasPrefix(p, "postgresql://") {
		return p
	}
	return ""
}

// redactURL returns a database URL without its password, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable database URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
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
			d.certsErr = fmt.Errorf("store %s: certificate storage: %w", redactURL(u), d.certsErr)
		} else {
			d.log.Info("certificates shared through PostgreSQL", "store", redactURL(u))
		}
	})
	return d.certs, d.certsErr
}
