package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/resolver"
)

func TestResolveEndToEnd(t *testing.T) {
	l, flags := newLab(t)
	_ = l
	resolve := func(args ...string) result {
		t.Helper()
		return run(t, append(append([]string{"resolve", "--timeout", "3s"}, flags...), args...)...)
	}

	// RFC 8461 §5 enforce: exactly the line Postfix gets.
	if r := resolve("good.test"); r.code != ExitOK || r.stdout != "OK secure match=.good.test servername=hostname\n" {
		t.Errorf("good.test: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	// Keys as Postfix writes them, with the zone options.
	if r := resolve("--no-sni", "--tlsrpt", "[GOOD.test]:25"); r.code != ExitOK ||
		r.stdout != "OK secure match=.good.test policy_type=sts policy_domain=good.test mx_host_pattern=*.good.test { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: *.good.test } { policy_string = max_age: 604800 }\n" {
		t.Errorf("[GOOD.test]:25 with --tlsrpt: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	// RFC 8461 §2: DANE first.
	r := resolve("--explain", "dane.test")
	for _, want := range []string{"dane.test\n", "reply     OK dane-only", "rule      dane-all:", "mx1.dane.test: usable", "mx2.dane.test: usable", "record id 20261101"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--explain dane.test lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	// A DNS that never answers on a validating resolver: DANE cannot be
	// ruled out, so Postfix must defer (exit 3 for scripts).
	if r := resolve("silent.test"); r.code != ExitUndetermined || !strings.HasPrefix(r.stdout, "TEMP ") {
		t.Errorf("silent.test: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	// No policy for address literals (RFC 8461 §3.4).
	if r := resolve("--json", "[192.0.2.1]"); r.code != ExitOK || !strings.Contains(r.stdout, `"rule": "invalid-key"`) || !strings.Contains(r.stdout, `"reply": "NOTFOUND "`) {
		t.Errorf("[192.0.2.1]: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	var x resolver.Explanation
	r = resolve("--json", "good.test")
	if err := json.Unmarshal([]byte(r.stdout), &x); err != nil || x.Decision.Rule != "sts-enforce" || x.Discovery == nil || len(x.Discovery.Fetches) != 1 || x.Entry == nil || !x.Entry.InForce {
		t.Errorf("--json good.test: %v\n%s", err, r.stdout)
	}
	if r := run(t, "resolve", "a.test", "b.test"); r.code != ExitUsage {
		t.Errorf("two domains: exit %d", r.code)
	}
}

// TestResolveServer asks a running daemon through its admin listener: the
// second answer comes from the daemon's cache.
func TestResolveServer(t *testing.T) {
	l, _ := newLab(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mailtls.yaml")
	text := fmt.Sprintf("admin: {listen: \"127.0.0.1:0\"}\nresolver:\n  listen: [\"127.0.0.1:0\"]\n  cache_file: %s\n  resolvers: [%q]\n",
		filepath.Join(dir, "cache.db"), l.DNS.Addr())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, cfg)
	admin := s.Addr("admin")
	if admin == "" || s.Addr("resolver") == "" {
		t.Fatalf("listeners: admin %q, resolver %q\n%s", admin, s.Addr("resolver"), s.Logs())
	}
	ask := func() resolver.Explanation {
		t.Helper()
		r := run(t, "resolve", "--server", admin, "--json", "dane.test")
		var x resolver.Explanation
		if err := json.Unmarshal([]byte(r.stdout), &x); err != nil || r.code != ExitOK {
			t.Fatalf("resolve --server: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		return x
	}
	first := ask()
	if first.Reply != "OK dane-only" || first.Cache != "miss" {
		t.Errorf("first: reply %q cache %q", first.Reply, first.Cache)
	}
	second := ask()
	if second.Reply != "OK dane-only" || second.Cache != "hit" || second.DANECache != "hit" || second.Entry == nil {
		t.Errorf("second: reply %q cache %q dane %q entry %+v", second.Reply, second.Cache, second.DANECache, second.Entry)
	}
	if r := run(t, "resolve", "--server", admin, "--explain", "dane.test"); !strings.Contains(r.stdout, "answered from the cache") {
		t.Errorf("--explain from the daemon:\n%s%s", r.stdout, r.stderr)
	}
	if r := run(t, "resolve", "--server", "127.0.0.1:1", "dane.test"); r.code != ExitUsage || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("unreachable server: exit %d %s", r.code, r.stderr)
	}
}
