package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestStoreMigrateCertificates: a host instance that ran without a store
// got its certificates from the lab's ACME CA (Pebble) into
// host.storage/certmagic; `mailtls store migrate --certs` copies them into
// PostgreSQL (a second run copies nothing), and an instance started on
// that database with an empty storage folder serves the same certificates
// without placing a single order.
func TestStoreMigrateCertificates(t *testing.T) {
	db := lab.NewPostgresDB(t)
	l := lab.New(t)
	ports := lab.FreePorts(t, 2) // http-01, tls-alpn-01
	ip, err := lab.FreeLoopbackPorts(ports...)
	if err != nil {
		t.Fatal(err)
	}
	acme := lab.NewACME(t, l.DNS, l.CA, lab.ACMEOptions{HTTPPort: ports[0], TLSPort: ports[1]})
	dir := t.TempDir()
	apiRoots, err := acme.WriteAPIRootPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	z := fmt.Sprintf("m%d.test", time.Now().UnixNano()%1e9)
	doms := []string{"d0." + z, "d1." + z}
	for _, d := range doms {
		l.DNS.MustAdd(t, fmt.Sprintf("mta-sts.%s. 300 IN A %s", d, ip))
	}
	f := &sharedHosts{l: l, acme: acme, ports: ports}
	config := func(name, store string) string {
		var yaml strings.Builder
		if store != "" {
			fmt.Fprintf(&yaml, "store: %q\n", store)
		}
		fmt.Fprintf(&yaml, `admin: {listen: "127.0.0.1:0"}
host:
  listen_https: [%q]
  listen_http: [%q]
  storage: %s
  acme: {ca: %q, email: hostmaster@%s, trusted_roots: %s}
  domains:
`, lab.AddrPort(ip, ports[1]), lab.AddrPort(ip, ports[0]), filepath.Join(dir, name), acme.DirectoryURL(), z, apiRoots)
		for _, d := range doms {
			fmt.Fprintf(&yaml, "    %s: {mode: enforce, mx: [mx1.%s]}\n", d, d)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(yaml.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	serials := func(s *lab.Serve) []string {
		t.Helper()
		var out []string
		deadline := time.Now().Add(90 * time.Second)
		for _, d := range doms {
			for {
				sn, err := f.serial(ip, d)
				if err == nil {
					out = append(out, sn)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s is not served: %v\n%s", d, err, s.Logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return out
	}

	// One instance without a store orders its certificates.
	s := startServe(t, config("files", ""))
	before := serials(s)
	if err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	orders := acme.Orders()
	if orders != len(doms) {
		t.Fatalf("%d orders for %d names", orders, len(doms))
	}

	certs := filepath.Join(dir, "files", "certmagic")
	r := run(t, "store", "migrate", "--certs", certs, "--to", db)
	if r.code != 0 || !strings.Contains(r.stdout, "certificates: copied ") || strings.Contains(r.stdout, "copied 0 files") {
		t.Fatalf("migrate --certs: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	copied := strings.Fields(strings.SplitAfter(r.stdout, "copied ")[1])[0]
	r = run(t, "store", "migrate", "--certs", certs, "--to", db)
	if want := "copied 0 files from " + certs; r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "; "+copied+" were there already, 0 left") {
		t.Fatalf("second migrate --certs: %d, want %q and %s there already\n%s%s", r.code, want, copied, r.stdout, r.stderr)
	}

	// An instance on the database, with an empty storage folder, serves
	// the same certificates and orders nothing.
	s = startServe(t, config("db", db))
	if after := serials(s); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("serials %v on the database, %v before", after, before)
	}
	if n := acme.Orders(); n != orders {
		t.Errorf("%d orders after the move, %d before: certificates were ordered again", n, orders)
	}
	if logs := s.Logs(); strings.Contains(logs, "certificate obtained") {
		t.Errorf("the instance on the database obtained a certificate:\n%s", logs)
	}
}
