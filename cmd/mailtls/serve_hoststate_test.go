package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
)

// TestServeSharedPolicyIDs: two `mailtls serve` processes (built binary,
// host role, a storage folder each) on one PostgreSQL store share the
// policy ids and the MX sets of follow_mx domains (docs/scaling.md), so
// that the `_mta-sts` TXT record (RFC 8461 §3.1) is the same whichever
// instance `serve records` asks:
//
//  1. ids.json of an instance that ran without a store is imported: the
//     ids already published stay, and the other instance takes them too.
//  2. A policy changed in both configuration files, loaded by the two
//     instances seconds apart (ids are made from the time, so each alone
//     would make its own), gets one new id.
//  3. A follow_mx domain's MX set changes in DNS: both serve the new body
//     with one new id.
func TestServeSharedPolicyIDs(t *testing.T) {
	db := lab.NewPostgresDB(t)
	l := lab.New(t)
	dir := t.TempDir()
	l.DNS.MustAdd(t, "follow.test. 300 IN MX 10 mx1.follow.test.")
	cert, key := l.CA.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts.static.test", "mta-sts.follow.test"}})
	config := func(i int, store, staticMode string) string {
		path := filepath.Join(dir, fmt.Sprintf("mailtls%d.yaml", i))
		storeLine := ""
		if store != "" {
			storeLine = fmt.Sprintf("store: %q\n", store)
		}
		yaml := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
%shost:
  listen_https: ["127.0.0.1:0"]
  listen_http: ["127.0.0.1:0"]
  storage: %s
  resolvers: [%q]
  follow_mx_interval: 1s
  acme: {disabled: true}
  public_name: policies.host.test
  domains:
    static.test: {mode: %s, mx: [mx1.static.test], cert: %s, key: %s}
    follow.test: {mode: enforce, follow_mx: true, cert: %s, key: %s}
`, storeLine, filepath.Join(dir, fmt.Sprint("storage", i)), l.DNS.Addr(), staticMode, cert, key, cert, key)
		// Written aside and renamed: a reload never reads half a file.
		if err := os.WriteFile(path+".tmp", []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ids := func(cfg string) map[string]string {
		t.Helper()
		r := run(t, "serve", "records", "--config", cfg, "--no-check", "--json")
		var out struct {
			Domains []struct{ Domain, ID, Pending string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("records --json: %v\n%s%s", err, r.stdout, r.stderr)
		}
		m := map[string]string{}
		for _, d := range out.Domains {
			if d.ID == "" {
				t.Fatalf("records of %s: %s has no id (%s)", cfg, d.Domain, d.Pending)
			}
			m[d.Domain] = d.ID
		}
		return m
	}
	body := func(s *lab.Serve, domain string) (string, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: l.CA.Pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, s.Addr("host-https"))
			},
		}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://mta-sts." + domain + "/.well-known/mta-sts.txt")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return string(b), err
	}
	// waitBody waits until every instance serves a body of domain
	// containing want.
	waitBody := func(servers []*lab.Serve, domain, want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for i, s := range servers {
			for {
				b, err := body(s, domain)
				if err == nil && strings.Contains(b, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("instance %d does not serve %q for %s: %q, %v", i, want, domain, b, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	// 1. One instance ran without a store; its ids are published.
	cfg0 := config(0, "", "testing")
	s := startServe(t, cfg0)
	published := ids(cfg0)
	if err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "storage0", "ids.json")); err != nil {
		t.Fatal(err)
	}
	// A second passes, so that an id made now would differ.
	time.Sleep(1100 * time.Millisecond)
	cfg0 = config(0, db, "testing")
	cfg1 := config(1, db, "testing")
	servers := lab.StartServes(t, 2, func(i int) lab.ServeOptions {
		return lab.ServeOptions{Binary: binary, Config: []string{cfg0, cfg1}[i]}
	})
	for i, cfg := range []string{cfg0, cfg1} {
		if got := ids(cfg); got["static.test"] != published["static.test"] || got["follow.test"] != published["follow.test"] {
			t.Fatalf("instance %d on the store: ids %v, want the published %v", i, got, published)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "storage1", "ids.json")); err == nil {
		t.Error("instance 1 kept ids of its own in storage1/ids.json")
	}

	// 2. static.test goes to enforce; the instances load it a second and
	// more apart.
	config(0, db, "enforce")
	if err := servers[0].Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitBody(servers[:1], "static.test", "mode: enforce")
	time.Sleep(1100 * time.Millisecond)
	config(1, db, "enforce")
	if err := servers[1].Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitBody(servers, "static.test", "mode: enforce")
	id0, id1 := ids(cfg0), ids(cfg1)
	if id0["static.test"] == published["static.test"] || id0["static.test"] != id1["static.test"] {
		t.Fatalf("after the change: instance 0 says id %s, instance 1 %s (published before: %s); want one new id",
			id0["static.test"], id1["static.test"], published["static.test"])
	}
	b0, _ := body(servers[0], "static.test")
	b1, _ := body(servers[1], "static.test")
	if b0 != b1 {
		t.Fatalf("the instances serve different bodies:\n%s\n%s", b0, b1)
	}

	// 3. follow.test's MX set changes.
	l.DNS.Remove("follow.test", dns.TypeMX)
	l.DNS.MustAdd(t, "follow.test. 300 IN MX 10 mx2.follow.test.")
	waitBody(servers, "follow.test", "mx: mx2.follow.test")
	id0, id1 = ids(cfg0), ids(cfg1)
	if id0["follow.test"] == published["follow.test"] || id0["follow.test"] != id1["follow.test"] {
		t.Fatalf("after the MX change: instance 0 says id %s, instance 1 %s (published before: %s); want one new id",
			id0["follow.test"], id1["follow.test"], published["follow.test"])
	}
	b0, _ = body(servers[0], "follow.test")
	b1, _ = body(servers[1], "follow.test")
	if b0 != b1 || strings.Contains(b0, "mx1.follow.test") {
		t.Fatalf("the instances serve:\n%s\n%s", b0, b1)
	}
	// The TXT record printed is the same on both.
	r0 := run(t, "serve", "records", "--config", cfg0, "--no-check")
	r1 := run(t, "serve", "records", "--config", cfg1, "--no-check")
	if r0.stdout != r1.stdout || !strings.Contains(r0.stdout, "id="+id0["follow.test"]) {
		t.Fatalf("records differ:\n%s\n%s", r0.stdout, r1.stdout)
	}
}
