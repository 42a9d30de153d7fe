package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/policyhost"
)

// newCertManager sets up ACME (certmagic) for the host role. The ports and
// host are those of our own listeners, which answer the challenges
// (certmagic then never binds a listener of its own).
func newCertManager(ctx context.Context, d *Daemon, c *config.Config, https, plain []net.Listener) (certManager, error) {
	h := c.Host
	var roots *x509.CertPool
	if f := h.ACME.TrustedRoots; f != "" {
		pem, err := config.ReadLimited(f, policyhost.MaxCertFileSize)
		if err != nil {
			return nil, fmt.Errorf("host.acme.trusted_roots: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("host.acme.trusted_roots: %s holds no PEM certificate", f)
		}
	}
	// Challenges on a port we do not listen on cannot be answered.
	httpPort, tlsPort := port(plain), port(https)
	host := listenHost(https)
	if h := listenHost(plain); h != host {
		host = ""
	}
	o := policyhost.ACMEOptions{
		CA:           h.ACME.CA,
		Email:        h.ACME.Email,
		Challenges:   h.ACME.Challenges,
		TrustedRoots: roots,
		Storage:      h.Storage,
		HTTPPort:     httpPort,
		TLSPort:      tlsPort,
		ListenHost:   host,
		Log:          d.log.With("role", "host", "part", "acme"),
		Metrics:      d.m,
		Resolvers:    h.Resolvers,
	}
	if err := withCertStorage(ctx, d, c, &o); err != nil {
		return nil, err
	}
	a, err := policyhost.NewACME(o)
	if err != nil {
		return nil, fmt.Errorf("host.acme: %w", err)
	}
	return a, nil
}

// withCertStorage gives o the certificates' storage shared through
// PostgreSQL when the store is PostgreSQL (else o keeps its folder).
func withCertStorage(ctx context.Context, d *Daemon, c *config.Config, o *policyhost.ACMEOptions) error {
	s, err := d.certStorage(ctx, c)
	if err != nil {
		return err
	}
	if s != nil {
		o.CertStorage = s
	}
	return nil
}

// listenHost is the host part of the first listener ("" for all
// addresses).
func listenHost(ls []net.Listener) string {
	if len(ls) == 0 {
		return ""
	}
	h, _, _ := net.SplitHostPort(ls[0].Addr().String())
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return h
}
