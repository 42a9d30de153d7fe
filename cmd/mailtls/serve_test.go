package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
)

// startServe runs `mailtls serve --config cfg` (the binary under test)
// and waits until it serves.
func startServe(t *testing.T, cfg string) *lab.Serve {
	t.Helper()
	return lab.StartServe(t, lab.ServeOptions{Binary: binary, Config: cfg})
}

// servedLab is a lab with two identical domains, one whose policy the
// lab's own HTTPS server hosts (lab.test) and one hosted by mailtls serve
// (served.test), plus a serve configuration for the second.
func servedLab(t *testing.T) (l *lab.Lab, checkArgs []string, cfg string) {
	t.Helper()
	l = lab.New(t)
	dir := t.TempDir()
	for _, d := range []string{"lab.test", "served.test"} {
		l.DNS.MustAdd(t,
			fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, d, d),
			fmt.Sprintf(`%s. 300 IN MX 10 mx1.%s.`, d, d))
		l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	}
	cert, key := l.CA.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts.served.test"}})
	cfg = filepath.Join(dir, "mailtls.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
host:
  listen_https: ["127.0.0.1:0"]
  listen_http: ["127.0.0.1:0"]
  storage: %s
  acme: {disabled: true}
  public_name: policies.host.test
  domains:
    served.test:
      mode: enforce
      mx: [mx1.served.test]
      cert: %s
      key: %s
`, filepath.Join(dir, "storage"), cert, key)), 0o600)
	ca, err := l.CA.WriteRootPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l, []string{"--resolver", l.DNS.Addr(), "--ca-file", ca}, cfg
}

func TestServeEndToEnd(t *testing.T) {
	l, labArgs, cfg := servedLab(t)

	// Before the server ran, records has no id to give.
	r := run(t, "serve", "records", "--config", cfg, "--no-check")
	if r.code != ExitFindings || !strings.Contains(r.stdout, "no id yet") || !strings.Contains(r.stdout, "mta-sts.served.test. 3600 IN CNAME policies.host.test.") {
		t.Fatalf("records before start: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	s := startServe(t, cfg)
	r = run(t, "serve", "records", "--config", cfg, "--no-check", "--json")
	var out struct {
		Domains []struct{ Domain, ID string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Domains) != 1 || out.Domains[0].ID == "" {
		t.Fatalf("records --json: %v %s", err, r.stdout)
	}
	id := out.Domains[0].ID

	// Publish what records says, for served.test through mailtls serve and
	// for lab.test through the lab's server with the same policy.
	addr := l.NextAddr()
	l.DNS.MustAdd(t,
		`_mta-sts.served.test. 300 IN TXT "v=STSv1; id=`+id+`"`,
		"mta-sts.served.test. 3600 IN CNAME policies.host.test.",
		"policies.host.test. 300 IN A "+addr.String(),
		`_mta-sts.lab.test. 300 IN TXT "v=STSv1; id=`+id+`"`)
	if err := l.MapAddr(s.Addr("host-https"), addr, 443); err != nil {
		t.Fatal(err)
	}
	l.MustPolicyHost(t, "lab.test", lab.PolicyHostOptions{Body: "version: STSv1\r\nmode: enforce\r\nmx: mx1.lab.test\r\nmax_age: 604800\r\n"})
	args := append([]string{"check", "--json"}, labArgs...)
	for _, c := range l.ConnectToFlags() {
		args = append(args, "--connect-to", c)
	}

	// The grade does not depend on who hosts the policy.
	grades := map[string]string{}
	for _, d := range []string{"lab.test", "served.test"} {
		r := run(t, append(args, d)...)
		var doc struct {
			Grade    string
			Findings []struct{ ID string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("%s: %v\n%s", d, err, r.stderr)
		}
		var ids []string
		for _, f := range doc.Findings {
			// served.test delegates its policy host by CNAME (RFC 8461
			// §8.2), which the scan notes; that is the setup, not the hosting.
			if f.ID != "policy-host-delegated" {
				ids = append(ids, f.ID)
			}
		}
		grades[d] = doc.Grade + " " + strings.Join(ids, ",")
		if r.code != ExitOK {
			t.Errorf("%s: exit %d: %s", d, r.code, grades[d])
		}
	}
	if grades["lab.test"] != grades["served.test"] || !strings.HasPrefix(grades["served.test"], "A") {
		t.Errorf("hosting changed the result: lab %q, mailtls serve %q", grades["lab.test"], grades["served.test"])
	}

	// records checks DNS: everything is current.
	r = run(t, "serve", "records", "--config", cfg, "--resolver", l.DNS.Addr())
	if r.code != ExitOK || !strings.Contains(r.stdout, `_mta-sts.served.test. 3600 IN TXT "v=STSv1; id=`+id+`"`) || !strings.Contains(r.stdout, "; ok: DNS publishes id="+id) {
		t.Errorf("records: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A changed policy, reloaded by SIGHUP, gets a new id; DNS is now stale.
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "mode: enforce", "mode: testing", 1)), 0o600)
	s.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Logs(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r = run(t, "serve", "records", "--config", cfg, "--resolver", l.DNS.Addr())
	if r.code != ExitFindings || !strings.Contains(r.stdout, "; PROBLEM: _mta-sts.served.test publishes id="+id+" but the server serves the policy with id=") {
		t.Errorf("records after the change: exit %d\n%s", r.code, r.stdout)
	}
	// A second v=STSv1 record, invalid: senders see no policy, and records
	// says so with check's finding ID (RFC 8461 §3.1).
	l.DNS.MustAdd(t, `_mta-sts.served.test. 300 IN TXT "v=STSv1; id=not valid!"`)
	r = run(t, "serve", "records", "--config", cfg, "--resolver", l.DNS.Addr())
	if r.code != ExitFindings || !strings.Contains(r.stdout, "; ERROR [sts-record-multiple]: ") {
		t.Errorf("records with two v=STSv1 records: exit %d\n%s", r.code, r.stdout)
	}

	// SIGTERM: a clean stop, exit 0.
	if err := s.Stop(20 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.Logs())
	}
}

func TestServeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("host:\n  domains:\n    a.test:\n      mode: testing\n      mxx: [a]\n"), 0o600)
	for _, args := range [][]string{
		{"serve", "--config", bad},
		{"serve", "records", "--config", bad},
	} {
		r := run(t, args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, `bad.yaml:5: unknown key "mxx"`) {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r := run(t, "serve", "--config", filepath.Join(dir, "missing.yaml")); r.code != ExitUsage || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("missing file: exit %d %q", r.code, r.stderr)
	}
	if r := run(t, "serve", "records"); r.code != ExitUsage {
		t.Errorf("records without --config: exit %d", r.code)
	}
	// --roles names roles of the file (docs/scaling.md).
	if r := run(t, "serve", "--config", bad, "--roles", "web, nope"); r.code != ExitUsage || !strings.Contains(r.stderr, "unknown key") {
		t.Errorf("--roles with a bad file: exit %d %q", r.code, r.stderr)
	}
	web := filepath.Join(dir, "web.yaml")
	os.WriteFile(web, []byte("admin: {listen: off}\nstore: "+filepath.Join(dir, "m.db")+"\nweb:\n  listen: [\"127.0.0.1:0\"]\n"), 0o600)
	for roles, want := range map[string]string{"web,nope": `unknown role "nope"`, "host": "no host: section", "admin": `admin.listen is "off"`, "": "name at least one"} {
		if r := run(t, "serve", "--config", web, "--roles", roles); r.code != ExitUsage || !strings.Contains(r.stderr, want) {
			t.Errorf("--roles %q: exit %d %q, want %q", roles, r.code, r.stderr, want)
		}
	}
	if r := run(t, "serve", "--help"); r.code != ExitOK || !strings.Contains(r.stderr+r.stdout, "SIGHUP") {
		t.Errorf("serve --help: exit %d", r.code)
	}
}

// TestServeACMEEndToEnd: `mailtls serve` gets certificates for several
// domains from a local ACME CA (Pebble) and `mailtls check` validates the
// served policies with them: grade A+, as with any other host.
func TestServeACMEEndToEnd(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	ports := lab.FreePorts(t, 2)
	acme := lab.NewACME(t, l.DNS, l.CA, lab.ACMEOptions{HTTPPort: ports[0], TLSPort: ports[1]})
	apiRoots, err := acme.WriteAPIRootPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	// certmagic keeps per-name state in a process; a fresh zone per run
	// keeps runs apart in Pebble's logs too.
	z := fmt.Sprintf("e%d.test", time.Now().UnixNano()%1e9)
	doms := []string{"one." + z, "two." + z, "three." + z}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, `admin: {listen: "off"}
host:
  listen_https: ["127.0.0.1:%d"]
  listen_http: ["127.0.0.1:%d"]
  storage: %s
  acme: {ca: %q, trusted_roots: %s}
  domains:
`, ports[1], ports[0], filepath.Join(dir, "storage"), acme.DirectoryURL(), apiRoots)
	for _, d := range doms {
		fmt.Fprintf(&yaml, "    %s: {mode: enforce, mx: [mx1.%s]}\n", d, d)
		l.DNS.MustAdd(t, "mta-sts."+d+". 300 IN A 127.0.0.1",
			fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, d, d),
			fmt.Sprintf(`%s. 300 IN MX 10 mx1.%s.`, d, d))
		l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	}
	cfg := filepath.Join(dir, "mailtls.yaml")
	os.WriteFile(cfg, []byte(yaml.String()), 0o600)
	s := startServe(t, cfg)

	// Trust the lab CA (the MX hosts) and Pebble's root (the policy hosts).
	roots := filepath.Join(dir, "roots.pem")
	os.WriteFile(roots, append(l.CA.RootPEM(), acme.IssuedRootPEM()...), 0o600)
	args := []string{"check", "--json", "--resolver", l.DNS.Addr(), "--ca-file", roots}
	for _, c := range l.ConnectToFlags() {
		args = append(args, "--connect-to", c)
	}
	// The policy host is 127.0.0.1:443 in DNS; serve listens on another port.
	args = append(args, "--connect-to", fmt.Sprintf("127.0.0.1:443:127.0.0.1:%d", ports[1]))

	deadline := time.Now().Add(60 * time.Second)
	for _, d := range doms {
		for {
			r := run(t, "serve", "records", "--config", cfg, "--no-check", "--json")
			var out struct{ Domains []struct{ Domain, ID string } }
			json.Unmarshal([]byte(r.stdout), &out)
			for _, o := range out.Domains {
				if o.Domain == d && o.ID != "" {
					l.DNS.Remove("_mta-sts."+d, dns.TypeTXT)
					l.DNS.MustAdd(t, `_mta-sts.`+d+`. 300 IN TXT "v=STSv1; id=`+o.ID+`"`)
				}
			}
			r = run(t, append(args, d)...)
			var doc struct {
				Grade    string
				Findings []struct{ ID, Title string }
			}
			json.Unmarshal([]byte(r.stdout), &doc)
			if r.code == ExitOK && doc.Grade == "A+" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: exit %d grade %q findings %+v\nserve log:\n%s", d, r.code, doc.Grade, doc.Findings, s.Logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if n := acme.Orders(); n != len(doms) {
		t.Errorf("%d ACME orders, want %d", n, len(doms))
	}
}

// TestServeInProcessLeavesNothing runs serve in this process and stops
// it: nothing it started (the SIGHUP forwarder included) keeps running.
func TestServeInProcessLeavesNothing(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "mailtls.yaml")
	os.WriteFile(cfg, []byte("admin: {listen: \"127.0.0.1:0\"}\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lab.LogBuffer
	env := DefaultEnv()
	env.Stdout, env.Stderr = io.Discard, &stderr
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"serve", "--config", cfg}, env) }()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "mailtls serve started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var left string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		left = ""
		for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "cmd/mailtls.runServe") || strings.Contains(g, "internal/daemon.") {
				left += g + "\n\n"
			}
		}
		if left == "" {
			return
		}
	}
	t.Errorf("goroutines outlive serve:\n%s", left)
}

// TestServeBadCertificateExitsTwo: a certificate that cannot be served is a
// configuration error: exit status 2, as documented.
func TestServeBadCertificateExitsTwo(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	cert, key := l.CA.MustWriteLeaf(t, dir, lab.LeafOptions{DNSNames: []string{"mta-sts.other.test"}})
	cfg := filepath.Join(dir, "mailtls.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`admin: {listen: "off"}
host:
  listen_https: ["127.0.0.1:0"]
  listen_http: []
  storage: %s
  acme: {disabled: true}
  domains:
    a.test: {mode: testing, mx: [mx1.a.test], cert: %s, key: %s}
`, filepath.Join(dir, "storage"), cert, key)), 0o600)
	r := run(t, "serve", "--config", cfg)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "not mta-sts.a.test") {
		t.Errorf("exit %d, stderr %q; want 2 and the reason", r.code, r.stderr)
	}
}
