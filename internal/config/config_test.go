package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDefaultsWithoutFile(t *testing.T) {
	c := Default()
	if c.Host != nil || c.Admin.Listen != DefaultAdminListen || c.Log.Level != "info" {
		t.Errorf("defaults %+v", c)
	}
	// Without a file the web checker runs, on loopback only.
	if c.Web == nil || len(c.Web.Listen) != 1 || c.Web.Listen[0] != DefaultWebListen || c.Web.Scanner.AllowPrivateTargets || c.Web.Limits.ResultTTL.D() != MaxWebResultTTL {
		t.Errorf("web defaults %+v", c.Web)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	empty, err := Parse("empty.yaml", nil)
	if err != nil || empty.Admin.Listen != DefaultAdminListen || empty.Web != nil {
		t.Errorf("an empty file names no role: %v %+v", err, empty.Web)
	}
	w, err := Parse("w.yaml", []byte("web: {}\n"))
	if err != nil || w.Web == nil || w.Web.Listen[0] != DefaultWebListen || w.Web.Limits.Reuse.D() != 2*time.Minute || w.Web.Limits.ConcurrentScans != 4 {
		t.Errorf("web: {} takes the defaults: %v %+v", err, w.Web)
	}
}

func TestHostDefaults(t *testing.T) {
	c, err := Parse("c.yaml", []byte("host:\n  domains:\n    example.com: {mode: testing, mx: [mx1.example.com]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Host
	if h.ListenHTTPS[0] != ":443" || h.ListenHTTP[0] != ":80" || h.ACME.CA != DefaultACMECA || h.CacheControl != DefaultCacheControl || h.Limits.MaxConnsPerIP != DefaultMaxConnsPerIP {
		t.Errorf("host defaults %+v", h)
	}
	if got := h.Domains["example.com"].EffectiveMaxAge(); got != 86400 {
		t.Errorf("default max_age for testing %d", got)
	}
}

// TestDomainsMerge: YAML anchors and merge keys work in host.domains;
// explicit keys override merged ones.
func TestDomainsMerge(t *testing.T) {
	y := "host:\n  domains:\n    a.example: &c {mode: testing, mx: [mx.example.net]}\n    b.example: {<<: *c, mode: enforce}\n"
	c, err := Parse("c.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Host.Domains["a.example"], c.Host.Domains["b.example"]
	if a.Mode != "testing" || b.Mode != "enforce" || len(b.MX) != 1 || b.MX[0] != "mx.example.net" {
		t.Errorf("a %+v, b %+v", a, b)
	}
}

// TestErrors: every mistake names the file, the line or the key.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "hots:\n  domains: {}\n", `c.yaml:1: unknown key "hots"`},
		{"unknown domain key", "host:\n  domains:\n    example.com:\n      mode: testing\n      modee: enforce\n", `c.yaml:5: unknown key "modee"`},
		{"unknown key in merged settings", "host:\n  domains:\n    a.example: &d {mode: none}\n    b.example: {<<: *d, modee: x}\n", `c.yaml:4: unknown key "modee"`},
		{"domain twice", "host:\n  domains:\n    example.com: {mode: none}\n    example.com: {mode: none}\n", `c.yaml:4: mapping key "example.com" already defined at line 3`},
		{"domains not a mapping", "host:\n  domains: [example.com]\n", "c.yaml:2: host.domains must map"},
		{"domain of the wrong type", "host:\n  domains:\n    example.com: [enforce]\n", "c.yaml:3:"},
		{"syntax", "host: [\n", "c.yaml:"},
		{"bad mode", "host:\n  domains:\n    example.com: {mode: strict, mx: [a.example.com]}\n", `host.domains.example.com.mode "strict"`},
		{"bad mx", "host:\n  domains:\n    example.com: {mode: enforce, mx: [\"mx.example.com.\"]}\n", "ends with a dot"},
		{"no mx", "host:\n  domains:\n    example.com: {mode: enforce}\n", "needs mx patterns or follow_mx"},
		{"mx and follow_mx", "host:\n  domains:\n    example.com: {mode: enforce, follow_mx: true, mx: [a.example.com]}\n", "not both"},
		{"max_age too big", "host:\n  domains:\n    example.com: {mode: none, max_age: 31557601}\n", "max_age 31557601"},
		{"domain not canonical", "host:\n  domains:\n    Example.COM: {mode: none}\n", "canonical form"},
		{"cert without key", "host:\n  domains:\n    example.com: {mode: none, cert: /x.pem}\n", "both cert and key"},
		{"missing cert file", "host:\n  domains:\n    example.com: {mode: none, cert: /nonexistent/x.pem, key: /nonexistent/k.pem}\n", "no such file"},
		{"bad duration", "host:\n  follow_mx_interval: soon\n", "not a duration"},
		{"bad listen", "host:\n  listen_https: [\"example.com:443\"]\n", "must be an IP address"},
		{"bad challenge", "host:\n  acme: {challenges: [dns-01]}\n", `"dns-01"`},
		{"bad log level", "log: {level: loud}\n", `log.level "loud"`},
		{"web: result_ttl above an hour", "web:\n  limits: {result_ttl: 2h}\n", "at most 1h0m0s"},
		{"web: https without a certificate", "web:\n  listen_https: [\"127.0.0.1:8443\"]\n", "needs web.tls.cert"},
		{"web: bad public_url", "web:\n  public_url: check.example.com\n", "web.public_url"},
		{"web: bad proxy", "web:\n  trusted_proxies: [10.0.0.1/99]\n", "web.trusted_proxies"},
		{"web: bad allowed network", "web:\n  scanner: {allow_networks: [lan]}\n", "web.scanner.allow_networks"},
		{"web: bad ehlo", "web:\n  scanner: {ehlo: \"not a name\"}\n", "web.scanner.ehlo"},
		{"web: no listener", "web:\n  listen: []\n", "at least one address"},
		{"web: unknown key", "web:\n  scaner: {}\n", `c.yaml:2: unknown key "scaner"`},
		{"web: no connect-to from the config", "web:\n  scanner: {connect_to: [\"a:25:127.0.0.1:25\"]}\n", `unknown key "connect_to"`},
		{"static certs needed without ACME", "host:\n  acme: {disabled: true}\n  domains:\n    example.com: {mode: none}\n", "needs a static cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(path, make([]byte, MaxFileSize+1), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file is an error")
	}
}

// TestDocumentedExample loads the complete example of docs/config.md.
func TestDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(m) == 0 {
		t.Fatal("docs/config.md has no yaml example")
	}
	example := m[0][1]
	// The example points at certificate files; make them exist.
	dir := t.TempDir()
	for _, f := range []string{"/etc/mailtls/customer3.pem", "/etc/mailtls/customer3.key"} {
		os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte("x"), 0o600)
		example = []byte(strings.ReplaceAll(string(example), f, filepath.Join(dir, filepath.Base(f))))
	}
	c, err := Parse("docs/config.md", example)
	if err != nil {
		t.Fatal(err)
	}
	if c.Host == nil || len(c.Host.Domains) < 3 {
		t.Errorf("the example should show several domains: %+v", c.Host)
	}
}
