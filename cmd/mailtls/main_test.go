package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/lab"
)

// binary is the mailtls binary built once for the end-to-end tests.
var binary string

// TestMain builds the binary with coverage counters (-cover) for every
// package of the module, so that what the end-to-end tests run counts:
// each run writes its counters to GOCOVERDIR, which is $MAILTLS_COVERDIR
// when set, else the -test.gocoverdir of "go test -cover", else a
// directory deleted afterwards (docs/development.md, "Coverage").
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "mailtls-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "mailtls")
	build := exec.Command("go", "build", "-cover", "-coverpkg=github.com/mailtls/mailtls/...", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building mailtls: %v\n%s", err, out)
		os.Exit(2)
	}
	coverDir := os.Getenv("MAILTLS_COVERDIR")
	if f := flag.Lookup("test.gocoverdir"); coverDir == "" && f != nil {
		coverDir = f.Value.String()
	}
	if coverDir == "" {
		coverDir = filepath.Join(dir, "cover")
	}
	if err := os.MkdirAll(coverDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Every run of the binary inherits it (a binary built with -cover
	// warns on stderr without it).
	os.Setenv("GOCOVERDIR", coverDir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const policy = "version: STSv1\r\nmode: enforce\r\nmx: *.%s\r\nmax_age: 604800\r\n"

// newLab builds a lab with a good domain (good.test), a broken one
// (broken.test: MX not covered by its enforce policy) and one whose DNS
// never answers (silent.test).
func newLab(t *testing.T) (*lab.Lab, []string) {
	t.Helper()
	l := lab.New(t)
	for _, d := range []string{"good.test", "broken.test", "dane.test", "tarpit.test"} {
		l.DNS.MustAdd(t,
			fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261101"`, d),
			fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, d, d),
			fmt.Sprintf(`%s. 300 IN MX 10 mx1.%s.`, d, d))
		l.MustPolicyHost(t, d, lab.PolicyHostOptions{Body: fmt.Sprintf(policy, d)})
		mode := lab.SMTPStartTLS
		if d == "tarpit.test" {
			mode = lab.SMTPNoBanner
		}
		l.MustMX(t, "mx1."+d, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: mode})
	}
	l.MustMX(t, "backup.elsewhere.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{})
	l.DNS.MustAdd(t, `broken.test. 300 IN MX 20 backup.elsewhere.test.`)
	// dane.test is DNSSEC-signed (the lab resolver sets AD, also on the
	// root, so it counts as validating) and publishes TLSA for its MX.
	l.DNS.MustAdd(t, ". 300 IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 300")
	l.DNS.SetAD(".", true)
	for _, d := range []string{"good.test", "broken.test", "tarpit.test", "silent.test", "elsewhere.test", "mta-sts.dane.test"} {
		l.DNS.SetAD(d, false)
	}
	l.DNS.Drop("silent.test", dns.TypeANY)
	for _, n := range []string{"_mta-sts", "_mta_sts", "_smtp._tls", "_smtp-tlsrpt", "_smtp_tlsrpt", "mta-sts"} {
		l.DNS.Drop(n+".silent.test", dns.TypeANY)
	}
	mxCert := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx2.dane.test"}})
	l.DNS.MustAdd(t, "dane.test. 300 IN MX 20 mx2.dane.test.",
		"_25._tcp.mx2.dane.test. 300 IN TLSA "+dane.Record(3, 1, 1, mxCert.Leaf).String(),
		"_25._tcp.mx2.dane.test. 300 IN TLSA "+dane.Record(2, 0, 1, l.CA.Intermediate()).String(),
		"_25._tcp.mx1.dane.test. 300 IN TLSA "+dane.Record(2, 0, 1, l.CA.Intermediate()).String(),
		`_smtp._tls.mx1.dane.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@dane.test"`,
		`_smtp._tls.mx2.dane.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@dane.test"`)
	l.MustMX(t, "mx2.dane.test", []netip.Addr{l.NextAddr(), l.NextAddr6()}, lab.SMTPOptions{Cert: mxCert})
	ca, err := l.CA.WriteRootPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--resolver", l.DNS.Addr(), "--ca-file", ca}
	for _, c := range l.ConnectToFlags() {
		args = append(args, "--connect-to", c)
	}
	return l, args
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mailtls: %v", err)
	}
	return r
}

func TestCheckEndToEnd(t *testing.T) {
	_, labArgs := newLab(t)
	check := func(extra ...string) []string { return append(append([]string{"check"}, labArgs...), extra...) }

	t.Run("good domain: text report, exit 0", func(t *testing.T) {
		r := run(t, check("Good.TEST.")...)
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"good.test", "Grade A+", "policy enforce", `normalised "Good.TEST." to "good.test"`, "covered by *.good.test", "How senders read it", "STARTTLS TLS 1.3"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "\x1b[") {
			t.Error("colour with NO_COLOR set and no terminal")
		}
	})

	t.Run("broken domain: exit 1 and a fix", func(t *testing.T) {
		r := run(t, check("broken.test")...)
		if r.code != ExitFindings {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stdout)
		}
		if !strings.Contains(r.stdout, "mx-not-covered") || !strings.Contains(r.stdout, "mx: backup.elsewhere.test") || !strings.Contains(r.stdout, "mx: *.broken.test") {
			t.Errorf("want the finding and the fixed policy:\n%s", r.stdout)
		}
	})

	t.Run("JSON Lines in input order", func(t *testing.T) {
		r := run(t, check("--json", "broken.test", "user@good.test", "https://broken.test/")...)
		if r.code != ExitFindings {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 {
			t.Fatalf("want 3 JSON lines, got %d:\n%s", len(lines), r.stdout)
		}
		wantDomains := []string{"broken.test", "good.test", "broken.test"}
		wantGrades := []string{"D", "A+", "D"}
		for i, line := range lines {
			var doc struct {
				SchemaVersion int     `json:"schema_version"`
				Domain        string  `json:"domain"`
				Input         string  `json:"input"`
				Grade         *string `json:"grade"`
				Findings      []struct {
					ID string `json:"id"`
				} `json:"findings"`
			}
			if err := json.Unmarshal([]byte(line), &doc); err != nil {
				t.Fatalf("line %d is not JSON: %v", i+1, err)
			}
			if doc.SchemaVersion != 1 || doc.Domain != wantDomains[i] || doc.Grade == nil || *doc.Grade != wantGrades[i] {
				t.Errorf("line %d: schema %d domain %q grade %v, want %q %q", i+1, doc.SchemaVersion, doc.Domain, doc.Grade, wantDomains[i], wantGrades[i])
			}
		}
	})

	t.Run("--format json equals --json", func(t *testing.T) {
		a, b := run(t, check("--format", "json", "good.test")...), run(t, check("--json", "good.test")...)
		if a.code != 0 || b.code != 0 || !strings.HasPrefix(a.stdout, `{"schema_version":1,"domain":"good.test"`) {
			t.Errorf("--format json: exit %d %q", a.code, a.stdout[:min(60, len(a.stdout))])
		}
	})

	t.Run("DANE: TLSA verified on every address, A+", func(t *testing.T) {
		r := run(t, check("--json", "dane.test")...)
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		var doc struct {
			Grade string `json:"grade"`
			MX    []struct {
				Host      string `json:"host"`
				Addresses []struct {
					IP   string `json:"ip"`
					Pass bool   `json:"pass"`
					DANE struct {
						Status        string `json:"status"`
						MatchedRecord string `json:"matched_record"`
					} `json:"dane"`
					TLSVersion *string `json:"tls_version"`
				} `json:"addresses"`
				DANE *struct {
					Status string `json:"status"`
					DNSSEC string `json:"dnssec"`
				} `json:"dane"`
			} `json:"mx"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Grade != "A+" || len(doc.MX) != 2 || len(doc.MX[1].Addresses) != 2 {
			t.Fatalf("grade %q mx %+v", doc.Grade, doc.MX)
		}
		for _, m := range doc.MX {
			if m.DANE == nil || m.DANE.Status != "valid" || m.DANE.DNSSEC != "secure" {
				t.Errorf("%s: DANE %+v", m.Host, m.DANE)
			}
			for _, a := range m.Addresses {
				if !a.Pass || a.DANE.Status != "valid" || a.DANE.MatchedRecord == "" || a.TLSVersion == nil {
					t.Errorf("%s %s: %+v", m.Host, a.IP, a)
				}
			}
		}
	})

	t.Run("--no-smtp skips the probes and caps the grade at A", func(t *testing.T) {
		r := run(t, check("--no-smtp", "good.test")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Grade A ") || !strings.Contains(r.stdout, "not probed (--no-smtp)") {
			t.Errorf("exit %d\n%s", r.code, r.stdout)
		}
	})

	t.Run("MX hosts that never answer: bounded by the budget", func(t *testing.T) {
		r := run(t, check("--smtp-timeout", "1s", "--timeout", "4s", "tarpit.test")...)
		if r.took > 7*time.Second {
			t.Errorf("took %v with --timeout 4s", r.took)
		}
		if !strings.Contains(r.stdout, "smtp-no-banner") {
			t.Errorf("want smtp-no-banner:\n%s", r.stdout)
		}
	})

	t.Run("silent DNS: bounded by --timeout, not reported as missing", func(t *testing.T) {
		r := run(t, check("--json", "--timeout", "3s", "silent.test")...)
		if r.took > 8*time.Second {
			t.Errorf("took %v with --timeout 3s", r.took)
		}
		if !strings.Contains(r.stdout, `"policy_status":"undetermined"`) || !strings.Contains(r.stdout, `"grade":null`) || strings.Contains(r.stdout, "sts-record-missing") {
			t.Errorf("want undetermined, null grade and no sts-record-missing:\n%s", r.stdout)
		}
		if r.code != ExitUndetermined {
			t.Errorf("exit %d, want %d: a scan that could not tell must not pass", r.code, ExitUndetermined)
		}
	})

	t.Run("exit status precedence: 1 over 3 over 0", func(t *testing.T) {
		if r := run(t, check("--json", "--timeout", "3s", "good.test", "silent.test")...); r.code != ExitUndetermined {
			t.Errorf("good + silent: exit %d, want %d", r.code, ExitUndetermined)
		}
		if r := run(t, check("--json", "--timeout", "3s", "silent.test", "broken.test")...); r.code != ExitFindings {
			t.Errorf("silent + broken: exit %d, want %d", r.code, ExitFindings)
		}
	})
}

// TestNoResolverAnswers: when every resolver is unreachable the scan runs,
// reports nothing as missing, and exits 3, never 0.
func TestNoResolverAnswers(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", lab.FreePorts(t, 1)[0]) // nothing listens
	r := run(t, "check", "--json", "--timeout", "5s", "--resolver", dead, "example.test")
	if r.code != ExitUndetermined {
		t.Errorf("exit %d, want %d\n%s%s", r.code, ExitUndetermined, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, `"policy_status":"undetermined"`) || strings.Contains(r.stdout, "sts-record-missing") {
		t.Errorf("want undetermined and nothing reported missing:\n%s", r.stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage"},
		{"unknown command", []string{"scan", "example.com"}, "unknown command"},
		{"no domain", []string{"check"}, "name at least one domain"},
		{"bad flag", []string{"check", "--bogus", "example.com"}, "flag provided but not defined"},
		{"IP address", []string{"check", "192.0.2.1"}, "IP address"},
		{"single label", []string{"check", "localhost"}, "single label"},
		{"bad format", []string{"check", "--format", "xml", "example.com"}, "--format"},
		{"bad resolver", []string{"check", "--resolver", "not a resolver", "example.com"}, "mailtls check: --resolver \"not a resolver\": want an address such as 127.0.0.1:53"},
		{"bad connect-to", []string{"check", "--connect-to", "a:b", "example.com"}, "--connect-to"},
		{"missing CA file", []string{"check", "--ca-file", "/nonexistent.pem", "example.com"}, "--ca-file"},
		{"bad timeout", []string{"check", "--timeout", "0s", "example.com"}, "--timeout"},
		{"bad trust-ad", []string{"check", "--trust-ad", "nope nope", "example.com"}, "mailtls check: --trust-ad \"nope nope\": want an address such as 127.0.0.1:53"},
		{"bad ehlo", []string{"check", "--ehlo", "not a name", "example.com"}, "--ehlo"},
		{"bad max-mx", []string{"check", "--max-mx", "0", "example.com"}, "--max-mx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want 2", r.code)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := run(t, "check", "--help")
	for _, flag := range []string{"--json", "--format", "--resolver", "--ca-file", "--connect-to", "--timeout", "--no-smtp", "--smtp-timeout", "--ehlo", "--trust-ad", "--max-mx", "Exit status"} {
		if !strings.Contains(r.stderr, strings.TrimPrefix(flag, "-")) {
			t.Errorf("check --help lacks %s", flag)
		}
	}
	if r.code != ExitOK {
		t.Errorf("--help exit %d", r.code)
	}
	if v := run(t, "version"); v.code != 0 || !strings.HasPrefix(v.stdout, "mailtls ") {
		t.Errorf("version: %d %q", v.code, v.stdout)
	}
}

func TestUnusableSystemResolver(t *testing.T) {
	env := DefaultEnv()
	var stderr bytes.Buffer
	env.Stderr, env.Stdout = &stderr, &bytes.Buffer{}
	env.ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(env.ResolvConf, []byte("# no nameservers\n"), 0o644)
	if code := Run(context.Background(), []string{"check", "example.com"}, env); code != ExitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "no usable resolver") {
		t.Errorf("stderr: %s", stderr.String())
	}
}
