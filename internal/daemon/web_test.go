package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
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

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/lab"
)

// writeWebConfig writes a configuration with only the web role, scanning
// through the lab DNS; the lab's fake addresses are allowed as an
// internal deployment would allow its networks.
func (e *env) writeWebConfig(extra string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`log: {level: debug}
admin: {listen: "127.0.0.1:0"}
web:
  listen: ["127.0.0.1:0"]
  scanner:
    resolvers: [%q]
    ehlo: checker.example.test
    allow_networks: ["127.0.0.0/8", "::1/128"]
%s`, e.l.DNS.Addr(), extra)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestWebRole: `mailtls serve` with a web: section scans a lab domain
// through the API with the configured EHLO name, counts it in /metrics
// and reports it in /healthz; the URL is logged.
func TestWebRole(t *testing.T) {
	e := newEnv(t)
	e.l.DNS.MustAdd(t, `_mta-sts.web.test. 300 IN TXT "v=STSv1; id=1"`, "web.test. 300 IN MX 10 mx.web.test.")
	e.l.MustPolicyHost(t, "web.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: testing\r\nmx: mx.web.test\r\nmax_age: 86400\r\n"})
	mx := e.l.MustMX(t, "mx.web.test", []netip.Addr{e.l.NextAddr()}, lab.SMTPOptions{})
	e.writeWebConfig("  public_url: https://check.example.test\n")
	e.start(Options{WebNet: e.l.Net(), WebRoots: e.l.CA.Pool()})
	base := "http://" + e.addrs["web"][0]
	if !strings.Contains(e.logs.String(), "web checker ready") || !strings.Contains(e.logs.String(), base+"/") {
		t.Errorf("the URL is not logged:\n%s", e.logs)
	}

	resp, err := http.Post(base+"/api/v1/scans", "application/json", strings.NewReader(`{"domain": "web.test"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 202 || created.ID == "" {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/api/v1/scans/" + created.ID + "?wait=40s")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		State    string
		Document struct{ Grade *string }
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.State != "done" || got.Document.Grade == nil || *got.Document.Grade != "B" {
		t.Fatalf("scan: %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mx.WaitIdle(ctx)
	if s := mx.Sessions(); len(s) != 1 || len(s[0].Commands) == 0 || s[0].Commands[0] != "EHLO checker.example.test" {
		t.Errorf("SMTP sessions %+v: want one greeting with the configured EHLO name", s)
	}
	// Metrics and health on the admin listener; the domain is in neither,
	// nor in the log.
	metrics := get(t, "http://"+e.addrs["admin"][0]+"/metrics")
	for _, want := range []string{`mailtls_web_scans_total{outcome="graded"} 1`, `mailtls_web_scan_requests_total{result="started"} 1`,
		"mailtls_web_scan_duration_seconds_count 1", "mailtls_web_scans_queued 0", "mailtls_web_sse_clients 0", `mailtls_web_scan_requests_total{result="refused_rate"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if h := get(t, "http://"+e.addrs["admin"][0]+"/healthz"); !strings.Contains(h, "web: 0 scans running, 0 queued") {
		t.Errorf("/healthz: %s", h)
	}
	for what, text := range map[string]string{"metrics": metrics, "log": e.logs.String()} {
		if strings.Contains(text, "web.test") {
			t.Errorf("the scanned domain appears in the %s", what)
		}
	}
	// public_url: behind a proxy that rewrites Host, a form post from the
	// public origin is accepted (the scan done above is reused), one from
	// elsewhere refused; an https public_url turns on HSTS.
	for origin, want := range map[string]int{"https://check.example.test": http.StatusSeeOther, "https://evil.example": http.StatusForbidden} {
		req, _ := http.NewRequest("POST", base+"/scan", strings.NewReader("form=1&smtp=1&domain=web.test"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("form post from %s: %d, want %d", origin, resp.StatusCode, want)
		}
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("no HSTS with an https public_url")
		}
	}
	if err := e.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestWebGuardOnByDefault: without allow_networks the lab's loopback
// addresses are refused and the report says so.
func TestWebGuardOnByDefault(t *testing.T) {
	e := newEnv(t)
	e.l.DNS.MustAdd(t, `_mta-sts.priv.test. 300 IN TXT "v=STSv1; id=1"`, "priv.test. 300 IN MX 10 mx.priv.test.")
	e.l.MustPolicyHost(t, "priv.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: testing\r\nmx: mx.priv.test\r\nmax_age: 86400\r\n"})
	mx := e.l.MustMX(t, "mx.priv.test", []netip.Addr{e.l.NextAddr()}, lab.SMTPOptions{})
	e.writeWebConfig("")
	data, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(data), `    allow_networks: ["127.0.0.0/8", "::1/128"]`+"\n", "", 1)), 0o600)
	e.start(Options{WebNet: e.l.Net(), WebRoots: e.l.CA.Pool()})
	base := "http://" + e.addrs["web"][0]
	resp, err := http.Post(base+"/api/v1/scans", "application/json", strings.NewReader(`{"domain": "priv.test"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	body := get(t, base+"/api/v1/scans/"+created.ID+"?wait=40s")
	for _, id := range []string{`"policy-host-not-public"`, `"mx-address-not-public"`} {
		if !strings.Contains(body, id) {
			t.Errorf("report lacks %s", id)
		}
	}
	if n := len(mx.Sessions()); n != 0 {
		t.Errorf("the guarded scan connected to the MX %d times", n)
	}
}

// TestWebAllowPrivateTargets: web.scanner.allow_private_targets (an
// internal deployment) lets the scans connect to loopback and private
// addresses; the ports stay 25 and 443 only.
func TestWebAllowPrivateTargets(t *testing.T) {
	e := newEnv(t)
	e.l.DNS.MustAdd(t, `_mta-sts.inside.test. 300 IN TXT "v=STSv1; id=1"`, "inside.test. 300 IN MX 10 mx.inside.test.")
	e.l.MustPolicyHost(t, "inside.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: testing\r\nmx: mx.inside.test\r\nmax_age: 86400\r\n"})
	mx := e.l.MustMX(t, "mx.inside.test", []netip.Addr{e.l.NextAddr()}, lab.SMTPOptions{})
	e.writeWebConfig("")
	data, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(data), `    allow_networks: ["127.0.0.0/8", "::1/128"]`+"\n", "    allow_private_targets: true\n", 1)), 0o600)
	e.start(Options{WebNet: e.l.Net(), WebRoots: e.l.CA.Pool()})
	base := "http://" + e.addrs["web"][0]
	resp, err := http.Post(base+"/api/v1/scans", "application/json", strings.NewReader(`{"domain": "inside.test"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	body := get(t, base+"/api/v1/scans/"+created.ID+"?wait=40s")
	if strings.Contains(body, "-not-public") || !strings.Contains(body, `"grade":"B"`) {
		t.Errorf("with private targets allowed: %.600s", body)
	}
	if n := len(mx.Sessions()); n != 1 {
		t.Errorf("%d SMTP sessions at the private MX, want 1", n)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDefaultsServeWebChecker: with no configuration file, serve runs the
// web checker on http://127.0.0.1:8080 and the admin listener on
// 127.0.0.1:9470. These are fixed ports: the test waits for them to be
// free (another test binary may hold them for a moment).
func TestDefaultsServeWebChecker(t *testing.T) {
	def := config.Default()
	waitFree(t, def.Web.Listen[0], def.Admin.Listen)
	resolv := t.TempDir() + "/resolv.conf"
	os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o600)
	// Without configuration the store is created in the data directory:
	// here systemd's STATE_DIRECTORY points it at the test's directory
	// (root's default would be /var/lib/mailtls).
	data := filepath.Join(t.TempDir(), "state")
	getenv := func(k string) string {
		if k == "STATE_DIRECTORY" {
			return data
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string][]string, 1)
	done := make(chan error, 1)
	logs := &lab.LogBuffer{}
	go func() {
		done <- Run(ctx, Options{Stderr: logs, ResolvConf: resolv, Ready: func(a map[string][]string) { ready <- a }, Getenv: getenv})
	}()
	var addrs map[string][]string
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve without configuration stopped: %v\n%s", err, logs)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve without configuration did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	if len(addrs["web"]) != 1 || addrs["web"][0] != "127.0.0.1:8080" || addrs["admin"][0] != "127.0.0.1:9470" {
		t.Fatalf("listeners %v", addrs)
	}
	if !strings.Contains(logs.String(), "url=http://127.0.0.1:8080/") {
		t.Errorf("log does not give the URL:\n%s", logs)
	}
	if st, err := os.Stat(filepath.Join(data, "mailtls.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the store was not created in the data directory, private: %v", err)
	}
	if h := get(t, "http://127.0.0.1:9470/healthz"); !strings.Contains(h, "store: ") || !strings.Contains(h, "schema version") {
		t.Errorf("/healthz does not report the store:\n%s", h)
	}
	home := get(t, "http://127.0.0.1:8080/")
	if !strings.Contains(home, `<form class="scan" method="post" action="/scan"`) {
		t.Errorf("home page:\n%s", home)
	}
}

// waitFree waits until the addresses can be listened on.
func waitFree(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		for {
			ln, err := net.Listen("tcp", a)
			if err == nil {
				ln.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s stays in use: %v", a, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestWebACME: with web.tls.acme the web checker gets the certificate of
// public_url's host from an ACME CA (Pebble), answering HTTP-01 on its
// plain listener or TLS-ALPN-01 (RFC 8737) on its HTTPS listener, and
// serves the checker over HTTPS with HSTS; another name is refused at the
// handshake.
func TestWebACME(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			e := newEnv(t)
			ports := lab.FreePorts(t, 2)
			acme := lab.NewACME(t, e.l.DNS, e.l.CA, lab.ACMEOptions{HTTPPort: ports[0], TLSPort: ports[1]})
			roots, err := acme.WriteAPIRootPEM(e.dir)
			if err != nil {
				t.Fatal(err)
			}
			// A random name: certmagic keeps some state per name for the process.
			name := fmt.Sprintf("check.w%d.test", time.Now().UnixNano()%1e9)
			e.l.DNS.MustAdd(t, name+". 300 IN A 127.0.0.1")
			e.writeWebConfig(fmt.Sprintf(`  listen: ["127.0.0.1:%d"]
  listen_https: ["127.0.0.1:%d"]
  public_url: https://%s
  tls:
    storage: %s
    acme: {ca: %q, email: "hostmaster@%s", trusted_roots: %q, challenges: [%s]}
`, ports[0], ports[1], name, filepath.Join(e.dir, "storage"), acme.DirectoryURL(), name, roots, challenge))
			// writeWebConfig gives a listen of its own; the test's replaces it.
			data, _ := os.ReadFile(e.cfgPath)
			os.WriteFile(e.cfgPath, []byte(strings.Replace(string(data), `  listen: ["127.0.0.1:0"]`+"\n", "", 1)), 0o600)
			e.start(Options{})
			get := func(sni string) (*http.Response, error) {
				c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
					DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, "tcp", e.addrs["web-https"][0])
					},
					TLSClientConfig: &tls.Config{RootCAs: acme.IssuedRoots(), ServerName: sni},
				}}
				resp, err := c.Get("https://" + sni + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := get(name)
				if err == nil {
					if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
						t.Errorf("home page over HTTPS: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no certificate from the ACME CA: %v\n%s", err, e.logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
			var types []string
			for _, v := range acme.Validations() {
				if v.Identifier == name && v.Status == "valid" {
					types = append(types, v.Type)
				}
			}
			if len(types) != 1 || types[0] != challenge {
				t.Errorf("validations %v, want one %s", acme.Validations(), challenge)
			}
			if _, err := get("stranger." + name); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("another name: %v", err)
			}
			if err := e.stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
}
