package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/certstorage"
	"github.com/mailtls/mailtls/internal/lab"
)

// TestServeSharedCertificates runs two `mailtls serve` processes with the
// host role, each with a storage folder of its own and one PostgreSQL
// store, against the lab's ACME CA (Pebble): every name is ordered once
// (certmagic's lock, shared through PostgreSQL), both serve the one
// certificate, and a challenge is answered by whichever instance the CA
// reaches, also for an order the other one placed (the challenge tokens
// are in the shared storage): half of the names point at each instance.
func TestServeSharedCertificates(t *testing.T) {
	f := newSharedHosts(t, 4, nil)
	doms, ips, acme, servers := f.doms, f.ips, f.acme, f.servers
	serial := f.serial

	// Each instance serves each name a certificate from the CA; both
	// serve the same one.
	deadline := time.Now().Add(90 * time.Second)
	for _, d := range doms {
		var got [2]string
		for i, ip := range ips {
			for {
				s, err := serial(ip, d)
				if err == nil {
					got[i] = s
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("instance %d does not serve %s: %v\ninstance 0:\n%s\ninstance 1:\n%s", i, d, err, servers[0].Logs(), servers[1].Logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		if got[0] != got[1] {
			t.Errorf("%s: the instances serve different certificates (serials %s and %s)", d, got[0], got[1])
		}
	}

	// One order per name, counted at the CA.
	for _, d := range doms {
		if n := f.issuedFor(d); n != 1 {
			t.Errorf("mta-sts.%s: %d certificates issued, want 1", d, n)
		}
	}
	if n := acme.Orders(); n != len(doms) {
		t.Errorf("%d orders at the CA, want %d (one per name)", n, len(doms))
	}
	// Every validation succeeded at the first try, at both instances.
	for _, v := range acme.Validations() {
		if v.Status != "valid" {
			t.Errorf("validation %+v", v)
		}
	}
	// Each name was obtained by one instance; where the CA validated at
	// the other one, that one answered from the shared storage
	// (certmagic's "distributed" challenge).
	crossed := 0
	for i, d := range doms {
		var by []int
		for j, s := range servers {
			if strings.Contains(s.Logs(), `msg="acme: certificate obtained" role=host part=acme host=mta-sts.`+d+"\n") {
				by = append(by, j)
			}
		}
		if len(by) != 1 {
			t.Errorf("%s obtained by the instances %v, want one", d, by)
			continue
		}
		if target := i % 2; by[0] != target {
			crossed++
			if !strings.Contains(servers[target].Logs(), "server_name=mta-sts."+d+" challenge=tls-alpn-01") &&
				!strings.Contains(servers[target].Logs(), "mta-sts."+d+" challenge=http-01") {
				t.Errorf("%s: instance %d ordered it, and instance %d, where the CA validated, logged no challenge for it", d, by[0], target)
			}
		}
	}
	// The first instance starts before the second and takes every lock
	// at once, so the names that point at the second are validated there.
	if crossed == 0 {
		t.Errorf("no name was validated at the instance that did not order it\ninstance 0:\n%s\ninstance 1:\n%s", servers[0].Logs(), servers[1].Logs())
	}
	t.Logf("%d names: %d orders, %d certificates issued, %d validations, %d answered by the instance that did not order", len(doms), acme.Orders(), len(acme.Issued()), len(acme.Validations()), crossed)
}

// TestServeSharedCertificatesHolderKilled: the instance that orders a
// certificate is SIGKILLed mid-issuance (the CA's validation stalls on a
// DNS lookup that is never answered), holding certmagic's issuance lock.
// The other instance, waiting for that lock, takes it over once the dead
// holder's lease runs out (certstorage.DefaultLockTTL; not at once: the
// lease does not die with the connection) and gets the certificate: two
// orders at the CA, one certificate.
func TestServeSharedCertificatesHolderKilled(t *testing.T) {
	var d string
	f := newSharedHosts(t, 2, func(f *sharedHosts) {
		d = f.doms[1] // points at the second instance
		f.l.DNS.Drop("mta-sts."+d, dns.TypeANY)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	lockHolder := func() (string, error) {
		var owner string
		err := conn.QueryRow(ctx, "SELECT owner FROM certmagic_locks WHERE name = $1", "issue_cert_mta-sts."+d).Scan(&owner)
		return owner, err
	}

	// The first instance stored the other name's certificate (a kill
	// before that would leave its lock held too), placed the order for d
	// and holds its lock while the CA tries to look the name up.
	deadline := time.Now().Add(60 * time.Second)
	var owner string
	for {
		stored := strings.Contains(f.servers[0].Logs(), `msg="acme: certificate obtained" role=host part=acme host=mta-sts.`+f.doms[0]+"\n")
		if stored && f.acme.Orders() == 2 {
			if owner, err = lockHolder(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no order under way for %s (orders %d, lock %v)\ninstance 0:\n%s\ninstance 1:\n%s", d, f.acme.Orders(), err, f.servers[0].Logs(), f.servers[1].Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(f.servers[0].Logs(), "identifier=mta-sts."+d) {
		t.Fatalf("the first instance is not the one obtaining %s:\n%s", d, f.servers[0].Logs())
	}
	f.servers[0].Kill()
	killed := time.Now()
	ordersAtKill := f.acme.Orders()
	f.l.DNS.Clear("mta-sts."+d, dns.TypeANY)

	// Right after the kill the lease is still the dead holder's.
	if o, err := lockHolder(); err != nil || o != owner {
		t.Fatalf("lock after the kill: owner %q %v, want the dead holder's %q", o, err, owner)
	}
	var served string
	deadline = time.Now().Add(2*certstorage.DefaultLockTTL + 60*time.Second)
	for {
		if served, err = f.serial(f.ips[1], d); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second instance never got %s after the holder was killed: %v\n%s", d, err, f.servers[1].Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(killed)
	if n := f.issuedFor(d); n != 1 {
		t.Errorf("%d certificates for %s, want 1", n, d)
	}
	// The killed instance may have placed more than one order (acmez
	// tries the other challenge type in a new order when a validation
	// fails); the one that took over places one.
	if n := f.acme.Orders() - ordersAtKill; n != 1 {
		t.Errorf("%d orders after the kill, want 1 (the instance that took the lock over); validations %+v\n%s", n, f.acme.Validations(), f.servers[1].Logs())
	}
	if !strings.Contains(f.servers[1].Logs(), `msg="acme: certificate obtained" role=host part=acme host=mta-sts.`+d+"\n") {
		t.Errorf("the second instance did not obtain %s itself:\n%s", d, f.servers[1].Logs())
	}
	// The instance says so in its metrics.
	metrics := f.metrics(t, 1)
	for _, want := range []string{"mailtls_certstorage_lock_takeovers_total 1\n", "mailtls_certstorage_leases_lost_total 0\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics of the instance that took over lack %q:\n%s", want, metrics)
		}
	}
	t.Logf("%s taken over and served (serial %s) %v after the kill; lease %v; orders %d before the kill (1 for %s), %d after", d, served, took.Round(100*time.Millisecond), certstorage.DefaultLockTTL, ordersAtKill, f.doms[0], f.acme.Orders()-ordersAtKill)
}

// sharedHosts are two `mailtls serve` processes with the host role on
// two loopback addresses (the same ports, those the CA validates at), one
// PostgreSQL store, a storage folder each, and n domains whose policy
// hosts point at the instances in turn.
type sharedHosts struct {
	l       *lab.Lab
	db      string
	acme    *lab.ACME
	ports   []int // http-01, tls-alpn-01
	ips     []netip.Addr
	doms    []string
	servers []*lab.Serve
}

// newSharedHosts starts the instances, the first one first; before runs
// once the names are in the lab DNS and before any instance starts.
func newSharedHosts(t *testing.T, n int, before func(f *sharedHosts)) *sharedHosts {
	t.Helper()
	f := &sharedHosts{db: lab.NewPostgresDB(t), l: lab.New(t), ports: lab.FreePorts(t, 2)}
	for range 2 {
		ip, err := lab.FreeLoopbackPorts(f.ports...)
		if err != nil {
			t.Fatal(err)
		}
		f.ips = append(f.ips, ip)
	}
	f.acme = lab.NewACME(t, f.l.DNS, f.l.CA, lab.ACMEOptions{HTTPPort: f.ports[0], TLSPort: f.ports[1]})
	dir := t.TempDir()
	apiRoots, err := f.acme.WriteAPIRootPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Names of their own per run: certmagic keeps per-name state.
	z := fmt.Sprintf("s%d.test", time.Now().UnixNano()%1e9)
	for i := range n {
		d := fmt.Sprintf("d%d.%s", i, z)
		f.doms = append(f.doms, d)
		// The CA validates at the instance the name points to.
		f.l.DNS.MustAdd(t, fmt.Sprintf("mta-sts.%s. 300 IN A %s", d, f.ips[i%2]))
	}
	if before != nil {
		before(f)
	}
	// No validation before both instances listen: the first orders at
	// once, and the CA may validate at the second (half the names point
	// there) while that one is still starting.
	release := f.acme.HoldChallenges()
	defer release()
	for i, ip := range f.ips {
		var yaml strings.Builder
		fmt.Fprintf(&yaml, `log: {level: debug}
admin: {listen: "127.0.0.1:0"}
store: %q
host:
  listen_https: [%q]
  listen_http: [%q]
  storage: %s
  acme: {ca: %q, email: hostmaster@%s, trusted_roots: %s}
  domains:
`, f.db, lab.AddrPort(ip, f.ports[1]), lab.AddrPort(ip, f.ports[0]), filepath.Join(dir, fmt.Sprint("storage", i)), f.acme.DirectoryURL(), z, apiRoots)
		for _, d := range f.doms {
			fmt.Fprintf(&yaml, "    %s: {mode: enforce, mx: [mx1.%s]}\n", d, d)
		}
		cfg := filepath.Join(dir, fmt.Sprintf("mailtls%d.yaml", i))
		os.WriteFile(cfg, []byte(yaml.String()), 0o600)
		f.servers = append(f.servers, startServe(t, cfg))
	}
	release()
	return f
}

// serial returns the serial number of the certificate the instance at ip
// serves for d's policy host, verified against the CA's roots.
func (f *sharedHosts) serial(ip netip.Addr, d string) (string, error) {
	dl := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dl, "tcp", lab.AddrPort(ip, f.ports[1]), &tls.Config{ServerName: "mta-sts." + d, RootCAs: f.acme.IssuedRoots()})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// metrics returns the /metrics page of instance i.
func (f *sharedHosts) metrics(t *testing.T, i int) string {
	t.Helper()
	addr := f.servers[i].Addr("admin")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// issuedFor counts the certificates the CA issued for d's policy host.
func (f *sharedHosts) issuedFor(d string) int {
	n := 0
	for _, c := range f.acme.Issued() {
		for _, name := range c.DNSNames {
			if name == "mta-sts."+d {
				n++
			}
		}
	}
	return n
}
