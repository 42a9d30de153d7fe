package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// resolverConfig writes a configuration with only the resolver role.
func (e *env) resolverConfig(zones string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`log: {level: debug}
admin: {listen: "127.0.0.1:0"}
web: null
resolver:
  listen: ["127.0.0.1:0"]
  unix: %s
  unix_mode: "0660"
  cache_file: %s
  resolvers: [%q]
%s`, filepath.Join(e.dir, "resolver.sock"), filepath.Join(e.dir, "cache.db"), e.l.DNS.Addr(), zones)
	tmp := e.cfgPath + ".new"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) adminDo(method, path string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.addrs["admin"][0]+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestResolverRole(t *testing.T) {
	e := newEnv(t)
	body := "version: STSv1\r\nmode: testing\r\nmx: mx.a.test\r\nmax_age: 86400\r\n"
	e.l.MustPolicyHost(t, "a.test", lab.PolicyHostOptions{Body: body})
	e.l.DNS.MustAdd(t, `_mta-sts.a.test. 300 IN TXT "v=STSv1; id=1"`, "a.test. 300 IN MX 10 mx.a.test.", "mx.a.test. 300 IN A 192.0.2.1")
	e.resolverConfig("")
	e.start(Options{Roots: e.l.CA.Pool(), Dialer: &dial.Dialer{Net: e.l.Net()}})

	query := func(addr, name, key string) string {
		t.Helper()
		c, err := socketmap.Dial(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rep, err := c.Query(ctx, name, key)
		if err != nil {
			t.Fatal(err)
		}
		return rep.String()
	}
	tcp := e.addrs["resolver"][0]
	unix := "unix:" + filepath.Join(e.dir, "resolver.sock")
	// RFC 8461 §5: testing is delivered as without a policy.
	if got := query(tcp, "postfix", "a.test"); got != "NOTFOUND " {
		t.Errorf("testing policy over TCP: %q", got)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "resolver.sock")); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("unix socket: %v %v", fi, err)
	}
	// A reload that adds a strict_testing zone applies at once.
	e.resolverConfig("  zones:\n    strict: {strict_testing: true}\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := query(unix, "strict", "a.test")
		if got == "OK secure match=mx.a.test servername=hostname" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the strict zone after a reload: %q\n%s", got, e.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Admin: show, explain, purge.
	if code, b := e.adminDo("GET", "/resolver/domains/A.test"); code != 200 || !strings.Contains(b, `"policy_id": "1"`) || !strings.Contains(b, `"policy_in_force": true`) {
		t.Errorf("GET domain: %d %s", code, b)
	}
	if code, b := e.adminDo("GET", "/resolver/explain/a.test?zone=strict"); code != 200 || !strings.Contains(b, `"rule": "sts-testing-strict"`) || !strings.Contains(b, `"cache": "hit"`) {
		t.Errorf("explain: %d %s", code, b)
	}
	if code, _ := e.adminDo("GET", "/resolver/domains/none.test"); code != 404 {
		t.Errorf("unknown domain: %d", code)
	}
	if code, _ := e.adminDo("GET", "/resolver/domains/%5B192.0.2.1%5D"); code != 400 {
		t.Errorf("literal: %d", code)
	}
	if code, _ := e.adminDo("DELETE", "/resolver/domains/a.test"); code != 200 {
		t.Errorf("purge: %d", code)
	}
	if code, _ := e.adminDo("GET", "/resolver/domains/a.test"); code != 404 {
		t.Errorf("after purge: %d", code)
	}
	query(tcp, "postfix", "a.test")
	if code, b := e.adminDo("DELETE", "/resolver/domains"); code != 200 || !strings.Contains(b, `"purged": 1`) {
		t.Errorf("purge all: %d %s", code, b)
	}

	// Metrics with fixed labels.
	_, m := e.adminDo("GET", "/metrics")
	for _, want := range []string{`mailtls_resolver_lookups_total{reply="notfound"}`, `mailtls_resolver_lookups_total{reply="secure"}`,
		`mailtls_resolver_cache_total{result="miss"}`, `mailtls_resolver_fetch_failures_total{reason="certificate"} 0`,
		`mailtls_resolver_lookup_seconds_bucket`, `mailtls_resolver_cache_entries`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if _, h := e.adminDo("GET", "/healthz"); !strings.Contains(h, "resolver: ") {
		t.Errorf("healthz: %s", h)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "resolver.sock")); !os.IsNotExist(err) {
		t.Errorf("the unix socket was left behind: %v", err)
	}
}
