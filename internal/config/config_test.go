package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
	if a := c.Web.Accounts; a.Registration != RegistrationOpen || a.SessionIdleTimeout.D() != 12*time.Hour || a.SessionLifetime.D() != 7*24*time.Hour {
		t.Errorf("account defaults %+v", a)
	}
	if c.Store != "" || c.Mail != nil {
		t.Errorf("store %q (the data directory's file is chosen by serve), mail %+v (none: mail goes to the log)", c.Store, c.Mail)
	}
	m, err := Parse("m.yaml", []byte("mail: {relay: \"smtp.example.com:587\", from: \"mailtls <noreply@example.com>\"}\n"))
	if err != nil || m.Mail.TLS != "starttls" || m.Mail.Timeout.D() != 30*time.Second {
		t.Errorf("mail defaults: %v %+v", err, m.Mail)
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

// TestErrors: every mistake is a typed Error naming the file, the line
// (when it has one) and the key.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		kind       ErrorKind
		line       int
		want       string
	}{
		{"unknown top-level key", "hots:\n  domains: {}\n", ErrUnknownKey, 1, `c.yaml:1: unknown key "hots"`},
		{"unknown domain key", "host:\n  domains:\n    example.com:\n      mode: testing\n      modee: enforce\n", ErrUnknownKey, 5, `c.yaml:5: unknown key "modee"`},
		{"unknown key in merged settings", "host:\n  domains:\n    a.example: &d {mode: none}\n    b.example: {<<: *d, modee: x}\n", ErrUnknownKey, 4, `c.yaml:4: unknown key "modee"`},
		{"domain twice", "host:\n  domains:\n    example.com: {mode: none}\n    example.com: {mode: none}\n", ErrDuplicateKey, 4, `c.yaml:4: host.domains.example.com is given twice (first at line 3)`},
		{"key twice", "log: {level: info}\nlog: {level: debug}\n", ErrDuplicateKey, 2, "log is given twice"},
		{"domains not a mapping", "host:\n  domains: [example.com]\n", ErrType, 2, "c.yaml:2: host.domains: want a mapping, not a list"},
		{"domain of the wrong type", "host:\n  domains:\n    example.com: [enforce]\n", ErrType, 3, "c.yaml:3: host.domains.example.com: want a mapping of settings"},
		{"number of the wrong type", "host:\n  limits: {burst: many}\n", ErrType, 2, `host.limits.burst "many": want a whole number`},
		{"list where a value goes", "host:\n  domains:\n    example.com: {mode: [a]}\n", ErrType, 3, "host.domains.example.com.mode: want a single value, not a list"},
		{"syntax", "host: [\n", ErrSyntax, 0, "c.yaml: line "},
		{"bad mode", "host:\n  domains:\n    example.com: {mode: strict, mx: [a.example.com]}\n", ErrInvalid, 3, `c.yaml:3: host.domains.example.com.mode "strict"`},
		{"bad mx", "host:\n  domains:\n    example.com: {mode: enforce, mx: [\"mx.example.com.\"]}\n", ErrInvalid, 3, "ends with a dot"},
		{"no mx", "host:\n  domains:\n    example.com: {mode: enforce}\n", ErrInvalid, 3, "needs mx patterns or follow_mx"},
		{"mx and follow_mx", "host:\n  domains:\n    example.com: {mode: enforce, follow_mx: true, mx: [a.example.com]}\n", ErrInvalid, 3, "not both"},
		{"max_age too big", "host:\n  domains:\n    example.com: {mode: none, max_age: 31557601}\n", ErrInvalid, 3, "max_age 31557601"},
		{"domain not canonical", "host:\n  domains:\n    Example.COM: {mode: none}\n", ErrInvalid, 3, "canonical form"},
		{"cert without key", "host:\n  domains:\n    example.com: {mode: none, cert: /x.pem}\n", ErrInvalid, 3, "both cert and key"},
		{"missing cert file", "host:\n  domains:\n    example.com: {mode: none, cert: /nonexistent/x.pem, key: /nonexistent/k.pem}\n", ErrInvalid, 3, "no such file"},
		{"cert is a device", "host:\n  domains:\n    example.com: {mode: none, cert: /dev/zero, key: /dev/zero}\n", ErrInvalid, 3, "/dev/zero: not a regular file"},
		{"bad duration", "host:\n  follow_mx_interval: soon\n", ErrType, 2, `host.follow_mx_interval "soon": want a duration such as 30s or 1h`},
		{"bad listen", "host:\n  listen_https: [\"example.com:443\"]\n", ErrInvalid, 2, "must be an IP address"},
		{"bad challenge", "host:\n  acme: {challenges: [dns-01]}\n", ErrInvalid, 2, `"dns-01"`},
		{"bad log level", "log: {level: loud}\n", ErrInvalid, 1, `log.level "loud"`},
		{"static certs needed without ACME", "host:\n  acme: {disabled: true}\n  domains:\n    example.com: {mode: none}\n", ErrInvalid, 4, "needs a static cert"},
		// A header value with CR or LF would end the header early.
		{"cache_control with CR LF", "host:\n  cache_control: \"max-age=60\\r\\nSet-Cookie: a=b\"\n", ErrInvalid, 2, "control characters"},
		{"negative global limit", "host:\n  limits: {max_conns: -2}\n", ErrInvalid, 2, "host.limits"},
		{"web: result_ttl above an hour", "web:\n  limits: {result_ttl: 2h}\n", ErrInvalid, 2, "at most 1h0m0s"},
		{"web: https without a certificate", "web:\n  listen_https: [\"127.0.0.1:8443\"]\n", ErrInvalid, 2, "needs web.tls.cert"},
		{"web: bad public_url", "web:\n  public_url: check.example.com\n", ErrInvalid, 2, "web.public_url"},
		{"web: bad proxy", "web:\n  trusted_proxies: [10.0.0.1/99]\n", ErrInvalid, 2, "web.trusted_proxies"},
		{"web: bad allowed network", "web:\n  scanner: {allow_networks: [lan]}\n", ErrInvalid, 2, "web.scanner.allow_networks"},
		{"web: bad ehlo", "web:\n  scanner: {ehlo: \"not a name\"}\n", ErrInvalid, 2, "web.scanner.ehlo"},
		{"web: no listener", "web:\n  listen: []\n", ErrInvalid, 2, "at least one address"},
		{"web: unknown key", "web:\n  scaner: {}\n", ErrUnknownKey, 2, `c.yaml:2: unknown key "scaner"`},
		{"web: no connect-to from the config", "web:\n  scanner: {connect_to: [\"a:25:127.0.0.1:25\"]}\n", ErrUnknownKey, 2, `unknown key "connect_to"`},
		{"web: acme without public_url", "web:\n  listen_https: [\"127.0.0.1:8443\"]\n  tls:\n    acme: {email: a@example.com}\n", ErrInvalid, 4, "set public_url to https://<host name>"},
		{"web: acme for an address", "web:\n  listen_https: [\"127.0.0.1:8443\"]\n  public_url: https://192.0.2.1\n  tls:\n    acme: {}\n", ErrInvalid, 5, "public_url"},
		{"web: acme and a certificate", "web:\n  listen_https: [\"127.0.0.1:8443\"]\n  public_url: https://check.example.com\n  tls:\n    cert: c.pem\n    key: k.pem\n    acme: {}\n", ErrInvalid, 7, "not both"},
		{"web: acme without https listener", "web:\n  public_url: https://check.example.com\n  tls:\n    acme: {}\n", ErrInvalid, 4, "needs an HTTPS listener"},
		{"web: acme http-01 without a plain listener", "web:\n  listen: []\n  listen_https: [\"127.0.0.1:8443\"]\n  public_url: https://check.example.com\n  tls:\n    acme: {challenges: [http-01]}\n", ErrInvalid, 6, "tls-alpn-01 challenge is needed"},
		{"web: bad registration", "web:\n  accounts: {registration: public}\n", ErrInvalid, 2, `web.accounts.registration "public"`},
		{"web: idle longer than lifetime", "web:\n  accounts: {session_idle_timeout: 48h, session_lifetime: 24h}\n", ErrInvalid, 2, "longer than session_lifetime"},
		{"web: lifetime too long", "web:\n  accounts: {session_lifetime: 2000h}\n", ErrInvalid, 2, "web.accounts.session_lifetime"},
		{"store: another kind of URL", "store: mysql://u:pw@db/mailtls\n", ErrInvalid, 1, "postgres:// URL"},
		{"web: negative keep_full_reports", "web:\n  retention: {keep_full_reports: -1}\n", ErrInvalid, 2, "web.retention.keep_full_reports -1"},
		{"web: summaries shorter than reports", "web:\n  retention: {full_reports: 2000h, scans: 1000h}\n", ErrInvalid, 2, "shorter than full_reports"},
		{"web: negative retention", "web:\n  retention: {scans: -1h}\n", ErrType, 2, "web.retention.scans"},
		{"web: too many worker scans", "web:\n  worker: {scans: 5000}\n", ErrInvalid, 2, "web.worker.scans 5000"},
		{"web: worker poll too short", "web:\n  worker: {poll: 100ms}\n", ErrInvalid, 2, "web.worker.poll 100ms"},
		{"web: worker lease too short", "web:\n  worker: {lease: 1s}\n", ErrInvalid, 2, "web.worker.lease 1s"},
		{"mail: no relay", "mail:\n  from: noreply@example.com\n", ErrInvalid, 1, "mail.relay"},
		{"mail: no from", "mail:\n  relay: smtp.example.com:587\n", ErrInvalid, 1, "mail.from"},
		{"mail: bad from", "mail:\n  relay: smtp.example.com:587\n  from: nobody\n", ErrInvalid, 1, "mail.from"},
		{"mail: relay without port", "mail:\n  relay: smtp.example.com\n  from: noreply@example.com\n", ErrInvalid, 1, "want host:port"},
		// Links and passwords never cross a network in clear.
		{"mail: plain text to a remote relay", "mail:\n  relay: smtp.example.com:25\n  tls: none\n  from: noreply@example.com\n", ErrInvalid, 1, "loopback"},
		{"mail: bad tls", "mail:\n  relay: smtp.example.com:25\n  tls: ssl\n  from: noreply@example.com\n", ErrInvalid, 1, "use starttls, tls or none"},
		{"mail: password twice", "mail:\n  relay: smtp.example.com:587\n  from: noreply@example.com\n  username: u\n  password: p\n  password_file: /etc/hostname\n", ErrInvalid, 5, "not both"},
		{"mail: password without user", "mail:\n  relay: smtp.example.com:587\n  from: noreply@example.com\n  password: p\n", ErrInvalid, 1, "needs a username"},
		{"mail: password file is a device", "mail:\n  relay: smtp.example.com:587\n  from: noreply@example.com\n  username: u\n  password_file: /dev/zero\n", ErrInvalid, 5, "not a regular file"},
		{"web: certificate is a device", "web:\n  tls: {cert: /dev/zero, key: /dev/zero}\n", ErrInvalid, 2, "web.tls.cert /dev/zero: not a regular file"},
		{"reports: a domain not canonical", "web: {}\nreports:\n  domains: [Example.COM]\n", ErrInvalid, 3, "reports.domains"},
		{"reports: https without host or web", "reports:\n  domains: [example.com]\n", ErrInvalid, 1, "neither role is on"},
		{"reports: bad https path", "web: {}\nreports:\n  https: {path: tlsrpt}\n", ErrInvalid, 3, "reports.https.path"},
		{"reports: smtp without addresses", "web: {}\nreports:\n  smtp: {hostname: mx.example.com, tls: {cert: /dev/null, key: /dev/null}}\n", ErrInvalid, 3, "reports.smtp.addresses"},
		{"reports: smtp without a certificate", "web: {}\nreports:\n  smtp: {hostname: mx.example.com, addresses: [tlsrpt@example.com]}\n", ErrInvalid, 3, "STARTTLS needs a certificate"},
		{"reports: smtp bad address", "host: {}\nreports:\n  smtp: {hostname: mx.example.com, addresses: [\"TLS RPT <a@b.example>\"]}\n", ErrInvalid, 3, "is not an address"},
		{"reports: imap in plain text", "web: {}\nreports:\n  imap:\n    - {server: \"imap.example.com:143\", tls: none, username: u, password_file: /dev/null}\n", ErrInvalid, 3, "plain text is not offered"},
		{"reports: imap without a password", "web: {}\nreports:\n  imap:\n    - {server: \"imap.example.com:993\", username: u}\n", ErrInvalid, 3, "password_file"},
		{"reports: unknown key", "web: {}\nreports:\n  smpt: {}\n", ErrUnknownKey, 3, `unknown key "smpt"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.yaml))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T), want Errors", err, err)
			}
			e := errs[0]
			if e.Kind != tt.kind || e.Line != tt.line || e.File != "c.yaml" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q (kind %d, line %d), want kind %d, line %d, containing %q", err, e.Kind, e.Line, tt.kind, tt.line, tt.want)
			}
		})
	}
}

// TestOneErrorPerMistake: a mistyped mode is one error, not also a
// misleading "needs mx patterns".
func TestOneErrorPerMistake(t *testing.T) {
	_, err := Parse("c.yaml", []byte("host:\n  domains:\n    example.com: {mode: enforcee}\n"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "host.domains.example.com.mode" {
		t.Errorf("want exactly the mode error, got %v", err)
	}
	// Every problem of a file is listed at once.
	_, err = Parse("c.yaml", []byte("log: {level: loud, formt: json}\nhost:\n  domains:\n    a.example: {mode: x, mx: 1}\n"))
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Errorf("want the two decoding errors, got %v", err)
	}
}

// hostile are files that once crashed or hung the server (issue 9):
// each is rejected at once with an ErrLimit error.
var hostile = []struct {
	name string
	yaml string
	want string
}{
	{"merge key referring to its own mapping", "host:\n  acme: {disabled: true}\n  domains: &d\n    a.example: {mode: none}\n    <<: *d\n",
		"the alias *d refers to a mapping or list that contains it"},
	{"settings merging themselves", "host: &h\n  <<: *h\n", "the alias *h"},
	{"a list that contains itself", "host:\n  listen_https: &l [a, *l]\n", "the alias *l"},
	// The merge list is not an alias, so only the merge's own check sees
	// the mapping inside it merging the list again.
	{"a merge list whose mapping merges the list", "host:\n  acme: {disabled: true}\n  domains:\n    <<: &s [{<<: *s}]\n",
		"the merge key at line 4 merges a mapping into itself"},
	{"billion laughs through merge keys", laughs(8), "nodes once its aliases are expanded"},
	{"one long list referred to many times", listLaughs(10000, 300), "nodes once its aliases are expanded"},
	{"merge chain deeper than the bound", mergeChain(MaxDepth + 5), "levels deep"},
}

// laughs nests domain mappings through merge keys, each level merging
// the one before ten times: n levels are 10^n domains to decode.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString("host:\n  acme: {disabled: true}\n  domains:\n    <<: &l0 {a.example: {mode: none}}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "    <<: &l%d {<<: [*l%d%s]}\n", i, i-1, strings.Repeat(fmt.Sprintf(", *l%d", i-1), 9))
	}
	return b.String()
}

// listLaughs is one long list of MX patterns that many domains refer to:
// each reference decodes the whole list again.
func listLaughs(items, domains int) string {
	var b strings.Builder
	b.WriteString("host:\n  acme: {disabled: true}\n  public_addresses: &mx [a.example" + strings.Repeat(", a.example", items-1) + "]\n  domains:\n")
	for i := range domains {
		fmt.Fprintf(&b, "    d%d.example: {mode: none, mx: *mx}\n", i)
	}
	return b.String()
}

// mergeChain is n mappings, each merging the one before.
func mergeChain(n int) string {
	var b strings.Builder
	b.WriteString("log: &m0 {level: info}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "x%d: &m%d {<<: *m%d}\n", i, i, i-1)
	}
	fmt.Fprintf(&b, "admin: {<<: *m%d}\n", n)
	return b.String()
}

func TestHostileFilesAreRejectedQuickly(t *testing.T) {
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Parse("c.yaml", []byte(tt.yaml)); done <- err }()
			select {
			case err := <-done:
				var errs Errors
				if !errors.As(err, &errs) || errs[len(errs)-1].Kind != ErrLimit || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want an ErrLimit error containing %q", err, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("parsing did not end")
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
	if _, err := Parse("big.yaml", make([]byte, MaxFileSize+1)); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized bytes: %v", err)
	}
	var e *Error
	if _, err := Load("/dev/zero"); !errors.As(err, &e) || e.Kind != ErrFile || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a device: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) || !errors.As(err, &e) || e.Kind != ErrFile {
		t.Errorf("a missing file is an ErrFile error: %v", err)
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
	for _, f := range []string{"/etc/mailtls/customer3.pem", "/etc/mailtls/customer3.key", "/etc/mailtls/smtp-password"} {
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
	// The reports example, with the complete one (STARTTLS takes the host
	// role's certificates).
	if len(m) < 2 || !strings.Contains(string(m[1][1]), "reports:") {
		t.Fatal("docs/config.md has no reports example")
	}
	pw := filepath.Join(dir, "imap-password")
	os.WriteFile(pw, []byte("x"), 0o600)
	both := string(example) + strings.ReplaceAll(string(m[1][1]), "/etc/mailtls/imap-password", pw)
	c, err = Parse("docs/config.md", []byte(both))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reports == nil || c.Reports.SMTP == nil || len(c.Reports.IMAP) != 1 || c.Reports.Retention.Raw.D() != 90*24*time.Hour || !c.ReportDomains()["example.net"] {
		t.Errorf("reports example: %+v", c.Reports)
	}
}

// FuzzParse: any bytes give a configuration or typed errors, never a
// panic or a hang; an accepted configuration written back as YAML parses
// to the same configuration.
func FuzzParse(f *testing.F) {
	f.Add([]byte("host:\n  domains:\n    example.com: {mode: testing, mx: [mx1.example.com]}\n"))
	f.Add([]byte("log: {level: debug, format: json}\nadmin: {listen: off}\nhost:\n  listen_https: [\":443\"]\n  limits: {max_conns: 5, burst: 2}\n  follow_mx_interval: 5m\n  domains:\n    a.example: &d {mode: enforce, mx: [\"*.mail.a.example\"], max_age: 86400}\n    b.example: {<<: *d, follow_mx: true, mx: []}\n"))
	for _, h := range hostile {
		if len(h.yaml) < 4096 {
			f.Add([]byte(h.yaml))
		}
	}
	f.Add([]byte(laughs(3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not Errors", err, err)
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Kind == 0 || e.Line < 0 || e.Msg == "" {
					t.Fatalf("malformed error %+v", e)
				}
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse("again.yaml", out)
		if err != nil {
			t.Fatalf("the configuration written back does not parse: %v\n%s", err, out)
		}
		// Compared as YAML: an empty list and no list read the same.
		if out2, err := yaml.Marshal(again); err != nil || string(out2) != string(out) {
			t.Fatalf("round trip changed the configuration:\n%s\n%s", out, out2)
		}
	})
}
