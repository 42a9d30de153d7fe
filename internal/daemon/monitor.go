package daemon

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"runtime/debug"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/webhook"
)

// newMonitor makes the worker of saved domains (docs/monitoring.md): it
// rescans them with the web checker's scanner, behind the same guard, and
// sends alerts by the server's mail and by webhooks, whose deliveries go
// to public addresses on port 443 only (plus the networks the web
// checker's configuration lets through).
func newMonitor(d *Daemon, c *config.Web, o monitor.ServeOptions, res Resolver, allow []netip.Prefix) (*monitor.Worker, error) {
	// Webhook hosts are looked up with the scanner's resolvers
	// (web.scanner.resolvers), like everything the web role looks up.
	lookup := func(ctx context.Context, host string) ([]netip.Addr, error) { return resolve.HostAddrs(ctx, res, host) }
	wh, err := webhook.New(webhook.Options{Dialer: &dial.Dialer{Guard: dial.NewGuardPorts(dial.WebhookPorts, allow...), Net: d.opts.WebNet},
		Lookup: lookup, Roots: d.opts.WebRoots, UserAgent: "mailtls-webhook"})
	if err != nil {
		return nil, err
	}
	host := "mailtls.invalid"
	if u, err := url.Parse(c.PublicURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	o.Store, o.Mail, o.Webhook, o.MessageIDHost = d.store, monitor.MailVia(d.mail), wh, host
	o.Log, o.Now = d.log.With("role", "monitor"), d.opts.Now
	cfg := monitorConfig(c)
	if d.opts.MonitorPoll > 0 {
		cfg.Poll = d.opts.MonitorPoll
	}
	return monitor.NewServe(cfg, o)
}

// monitorConfig is the worker's configuration from the web role's. Its
// janitor applies web.retention to the history of saved domains (zero
// fields take the store's defaults) and leaves TLS-RPT reports to the
// reports role, whose retention is reports.retention.
func monitorConfig(c *config.Web) monitor.Config {
	r := c.Retention
	return monitor.Config{ScannerVersion: scannerVersion(), BaseURL: c.PublicURL, ScanTimeout: c.Scanner.Timeout.D(),
		Scans: c.Worker.Scans, Poll: c.Worker.Poll.D(), LeaseTTL: c.Worker.Lease.D(),
		Retention: store.Retention{FullScans: r.FullReports.D(), KeepFull: r.KeepFullReports, Scans: r.Scans.D(), TLSRPTRaw: -1, TLSRPTReports: -1}}
}

// scannerVersion is stored with every monitoring scan: the module version
// and the commit it was built from.
func scannerVersion() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

// monitorHealth writes the worker's line of /healthz.
func monitorHealth(w io.Writer, m *monitor.Worker) {
	s := m.Stats()
	fmt.Fprintf(w, "monitor: %d scans stored, %d failed, %d interrupted; %d alerts delivered, %d retried, %d abandoned\n",
		s.Scanned, s.Failed, s.Interrupted, s.Delivered, s.Retried, s.Abandoned)
}
