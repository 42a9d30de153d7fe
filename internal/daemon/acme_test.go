package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestACMECertificates: serve gets certificates from a local ACME CA
// (Pebble) for every configured domain, on demand for on_demand ones, and
// never for a name that is not configured.
func TestACMECertificates(t *testing.T) {
	e := newEnv(t)
	ports := lab.FreePorts(t, 2)
	acme := lab.NewACME(t, e.l.DNS, e.l.CA, lab.ACMEOptions{HTTPPort: ports[0], TLSPort: ports[1]})
	roots, err := acme.WriteAPIRootPEM(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	// Random names: certmagic keeps some state per name for the process.
	z := fmt.Sprintf("z%d.test", time.Now().UnixNano()%1e9)
	doms := []string{"a." + z, "b." + z, "c." + z, "stranger." + z}
	for _, d := range doms {
		e.l.DNS.MustAdd(t, "mta-sts."+d+". 300 IN A 127.0.0.1")
	}
	cfg := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
host:
  listen_https: ["127.0.0.1:%d"]
  listen_http: ["127.0.0.1:%d"]
  storage: %s
  acme:
    ca: %s
    email: hostmaster@%s
    trusted_roots: %s
  domains:
    %s: {mode: enforce, mx: [mx1.%s]}
    %s: {mode: testing, mx: [mx1.%s]}
    %s: {mode: testing, mx: [mx1.%s], on_demand: true}
`, ports[1], ports[0], filepath.Join(e.dir, "storage"), acme.DirectoryURL(), z, roots, doms[0], doms[0], doms[1], doms[1], doms[2], doms[2])
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	e.start(Options{})

	client := func(d string) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", e.addrs["host-https"][0])
			},
			TLSClientConfig: &tls.Config{RootCAs: acme.IssuedRoots(), ServerName: "mta-sts." + d},
		}}
	}
	fetch := func(d string) (string, error) {
		resp, err := client(d).Get("https://mta-sts." + d + "/.well-known/mta-sts.txt")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, err = fmt.Fprint(&b, resp.StatusCode)
		return b.String(), err
	}
	for _, d := range doms[:2] {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, err := fetch(d)
			if err == nil && code == "200" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no certificate from the ACME CA: %v %s\n%s", d, err, code, e.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	orders := acme.Orders()
	if orders != 2 {
		t.Errorf("%d orders at start, want one per managed domain (the on_demand one waits)", orders)
	}
	// The unknown name is refused without an order.
	if _, err := fetch(doms[3]); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("an unconfigured name: %v", err)
	}
	// The on_demand domain gets its certificate at the first handshake.
	if code, err := fetch(doms[2]); err != nil || code != "200" {
		t.Errorf("on_demand: %v %s\n%s", err, code, e.logs)
	}
	if got := acme.Orders(); got != orders+1 {
		t.Errorf("orders %d, want %d: one for the on_demand domain, none for the stranger", got, orders+1)
	}
	if m := e.admin("/metrics"); !strings.Contains(m, `mailtls_host_certificate_events_total{event="obtained"} 3`) {
		t.Errorf("certificate metrics:\n%s", m)
	}
}
