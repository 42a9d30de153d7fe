package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// ourFrame is a stack line of a file of this repository's daemon or
// policyhost packages, test files excluded.
var ourFrame = regexp.MustCompile(`/internal/(daemon|policyhost)/[a-z_]+\.go:\d+`)

// leftovers returns the goroutines still running code of the daemon or
// policyhost packages, once Run has returned (polling a little, as
// goroutines end asynchronously).
func leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			for _, m := range ourFrame.FindAllString(g, -1) {
				if !strings.Contains(m, "_test.go") {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}

// TestNoGoroutineOutlivesRun: every goroutine serve starts ends when it
// stops, with many listeners too (one report channel once had 8 slots for
// any number of them).
func TestNoGoroutineOutlivesRun(t *testing.T) {
	e := newEnv(t)
	listeners := strings.Repeat(`"127.0.0.1:0", `, 11) + `"127.0.0.1:0"`
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"))
	cfg, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(cfg), `listen_https: ["127.0.0.1:0"]`, "listen_https: ["+listeners+"]", 1)), 0o600)
	e.start(Options{})
	if n := len(e.addrs["host-https"]); n != 12 {
		t.Fatalf("%d HTTPS listeners", n)
	}
	if got := e.policy(e.client(), "a.test"); !strings.Contains(got, "mx1.a.test") {
		t.Fatalf("policy %q", got)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t); len(left) > 0 {
		t.Errorf("%d goroutines outlive serve:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestBadCertificateAtStart: a certificate that does not cover
// mta-sts.<domain>, or whose key is another's, stops serve at start as a
// configuration error (exit status 2) naming it, and leaves nothing
// running.
func TestBadCertificateAtStart(t *testing.T) {
	e := newEnv(t)
	other, otherKey := e.l.CA.MustWriteLeaf(t, t.TempDir(), lab.LeafOptions{DNSNames: []string{"mta-sts.other.test"}})
	good, _ := e.l.CA.MustWriteLeaf(t, t.TempDir(), lab.LeafOptions{DNSNames: []string{"mta-sts.a.test"}})
	for _, tt := range []struct{ name, cert, key, want string }{
		{"a certificate for another name", other, otherKey, "it is for mta-sts.other.test, not mta-sts.a.test"},
		{"the key of another certificate", good, otherKey, "private key does not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.writeConfig("", fmt.Sprintf("    a.test: {mode: testing, mx: [mx1.a.test], cert: %s, key: %s}\n", tt.cert, tt.key))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := Run(ctx, Options{ConfigPath: e.cfgPath, Stderr: e.logs})
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v (%T), want a ConfigError containing %q", err, err, tt.want)
			}
			if left := leftovers(t); len(left) > 0 {
				t.Errorf("%d goroutines outlive a failed start:\n%s", len(left), strings.Join(left, "\n\n"))
			}
		})
	}
}

// hostileFiles crashed or hung serve at a reload (issue 9): a merge key
// that refers to its own mapping (stack overflow), and merge keys nested
// so that each level multiplies the document (hours of parsing, during
// which no signal was handled).
var hostileFiles = map[string]struct{ yaml, why string }{
	"self-referencing merge key": {"host:\n  acme: {disabled: true}\n  domains: &d\n    a.test: {mode: none}\n    <<: *d\n", "the alias *d refers to a mapping or list that contains it"},
	"billion laughs, 30 levels":  {laughs(30, 2), "levels deep"},
	"billion laughs, 8 levels":   {laughs(8, 10), "nodes once its aliases are expanded"},
}

// laughs nests domain mappings through merge keys, each level merging
// the one before fan times.
func laughs(n, fan int) string {
	var b strings.Builder
	b.WriteString("host:\n  acme: {disabled: true}\n  domains:\n    <<: &l0 {a.test: {mode: none}}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "    <<: &l%d {<<: [*l%d%s]}\n", i, i-1, strings.Repeat(fmt.Sprintf(", *l%d", i-1), fan-1))
	}
	return b.String()
}

// TestHostileFileAtReload: such a file saved over a running server is
// rejected with the reason, the old configuration keeps serving, and a
// stop still works at once.
func TestHostileFileAtReload(t *testing.T) {
	for name, hostile := range hostileFiles {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"))
			e.start(Options{})
			c := e.client()
			os.WriteFile(e.cfgPath, []byte(hostile.yaml), 0o600) // the watcher picks it up
			eventually(t, "the rejection", func() bool { return strings.Contains(e.logs.String(), "configuration rejected") })
			if !strings.Contains(e.logs.String(), hostile.why) {
				t.Errorf("the rejection must say why (%s):\n%s", hostile.why, e.logs)
			}
			if got := e.policy(c, "a.test"); !strings.Contains(got, "mx1.a.test") {
				t.Errorf("after a rejected file the old configuration must serve: %q", got)
			}
			start := time.Now()
			if err := e.stop(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("stopping took %v", took)
			}
		})
	}
}

// TestSlowLoadNeverBlocksAStop: a load slower than LoadTimeout is rejected
// with the reason, and a stop during it returns at once.
func TestSlowLoadNeverBlocksAStop(t *testing.T) {
	e := newEnv(t)
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"))
	e.start(Options{LoadTimeout: time.Millisecond})
	// A large file that is within every bound takes longer than 1 ms.
	var b strings.Builder
	b.WriteString("host:\n  acme: {disabled: true}\n  domains:\n")
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "    d%d.test: {mode: none}\n", i)
	}
	os.WriteFile(e.cfgPath, []byte(b.String()), 0o600)
	eventually(t, "the rejection", func() bool { return strings.Contains(e.logs.String(), "took longer than 1ms") })
	if got := e.policy(e.client(), "a.test"); !strings.Contains(got, "mx1.a.test") {
		t.Errorf("the old configuration must serve: %q", got)
	}
	start := time.Now()
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopping took %v", took)
	}
}

// TestCertificateExpiryWarnings: a static certificate that expires within
// 14 days, or has expired, is logged, counted in the metrics and makes
// /healthz say degraded, as time passes too; a renewed file clears it.
func TestCertificateExpiryWarnings(t *testing.T) {
	e := newEnv(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	nowFn := func() time.Time { return time.Unix(0, clock.Load()) }
	dir := t.TempDir()
	cert, key := e.l.CA.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts.a.test"},
		NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)})
	domain := fmt.Sprintf("    a.test: {mode: testing, mx: [mx1.a.test], cert: %s, key: %s}\n", cert, key)
	e.writeConfig("", domain, e.domainYAML("b.test", "testing", "mx1.b.test"))
	e.start(Options{Now: nowFn})
	if !strings.Contains(e.logs.String(), "certificate expires soon") {
		t.Errorf("no warning in the log:\n%s", e.logs)
	}
	if h := e.admin("/healthz"); !strings.HasPrefix(h, "degraded\n") || !strings.Contains(h, "the certificate of mta-sts.a.test expires") {
		t.Errorf("healthz %q", h)
	}
	if m := e.admin("/metrics"); !strings.Contains(m, `mailtls_host_certificates{state="expiring"} 1`) || !strings.Contains(m, `mailtls_host_certificates{state="ok"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}

	clock.Store(now.Add(11 * 24 * time.Hour).UnixNano())
	if h := e.admin("/healthz"); !strings.HasPrefix(h, "degraded\n") || !strings.Contains(h, "the certificate of mta-sts.a.test expired") {
		t.Errorf("healthz after expiry %q", h)
	}
	if m := e.admin("/metrics"); !strings.Contains(m, `mailtls_host_certificates{state="expired"} 1`) {
		t.Errorf("metrics after expiry lack the expired certificate")
	}

	// A renewed file, reloaded: healthy again.
	e.writeConfig("", e.domainYAML("a.test", "testing", "mx1.a.test"), e.domainYAML("b.test", "testing", "mx1.b.test"))
	clock.Store(now.UnixNano())
	e.reload <- struct{}{}
	eventually(t, "healthy again", func() bool { return strings.HasPrefix(e.admin("/healthz"), "ok\n") })
}
