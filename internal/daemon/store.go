package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
)

// needsStore reports whether a role that keeps data (accounts, saved
// domains, TLS-RPT reports) runs.
func (d *Daemon) needsStore(c *config.Config) bool {
	return d.roleOn("web", c) || d.roleOn("worker", c) || d.roleOn("reports", c)
}

// StorePath is the database file of a configuration: store, or
// mailtls.db in the data directory.
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
	db, err := sqlstore.Open(octx, path, sqlstore.Options{Now: d.opts.Now, Logger: d.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	d.store, d.storePath = db, path
	v, _ := db.SchemaVersion(ctx)
	d.log.Info("store open", "path", path, "schema", v)
	return nil
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
