package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
)

// policyLab builds:
//   - new.test: MX hosts, no MTA-STS yet (for init);
//   - ready.test: testing policy, MX passes STARTTLS (promote succeeds);
//   - notls.test: testing policy, an MX without STARTTLS (promote refuses);
//   - uncovered.test: testing policy that misses one MX (promote refuses);
//   - prod.test: enforce policy (retire, plan), with a new MX host ready.
func policyLab(t *testing.T) (*lab.Lab, []string) {
	t.Helper()
	l := lab.New(t)
	mx := func(d, host string, mode lab.SMTPMode, pref int) {
		l.MustMX(t, host, []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: mode})
		l.DNS.MustAdd(t, fmt.Sprintf("%s. 300 IN MX %d %s.", d, pref, host))
	}
	sts := func(d, mode string, maxAge int, patterns ...string) {
		body := "version: STSv1\r\nmode: " + mode + "\r\n"
		for _, p := range patterns {
			body += "mx: " + p + "\r\n"
		}
		body += fmt.Sprintf("max_age: %d\r\n", maxAge)
		l.DNS.MustAdd(t, fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261101"`, d), fmt.Sprintf(`_smtp._tls.%s. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@%s"`, d, d))
		l.MustPolicyHost(t, d, lab.PolicyHostOptions{Body: body})
	}
	mx("new.test", "mx1.new.test", lab.SMTPStartTLS, 10)
	mx("new.test", "tenant-new-test.mail.protection.outlook.com", lab.SMTPStartTLS, 20)
	mx("ready.test", "mx1.ready.test", lab.SMTPStartTLS, 10)
	sts("ready.test", "testing", 86400, "mx1.ready.test")
	mx("notls.test", "mx1.notls.test", lab.SMTPStartTLS, 10)
	mx("notls.test", "mx2.notls.test", lab.SMTPNoStartTLS, 20)
	sts("notls.test", "testing", 86400, "*.notls.test")
	mx("uncovered.test", "mx1.uncovered.test", lab.SMTPStartTLS, 10)
	mx("uncovered.test", "backup.elsewhere.test", lab.SMTPStartTLS, 20)
	sts("uncovered.test", "testing", 86400, "mx1.uncovered.test")
	mx("prod.test", "mx1.prod.test", lab.SMTPStartTLS, 10)
	mx("prod.test", "mx2.prod.test", lab.SMTPStartTLS, 20)
	sts("prod.test", "enforce", 604800, "mx1.prod.test", "mx2.prod.test")
	l.MustMX(t, "mx.newprovider.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{})
	l.MustMX(t, "mx.badprovider.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPNoStartTLS})

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

func TestPolicyCommands(t *testing.T) {
	l, labArgs := policyLab(t)
	policy := func(cmd string, extra ...string) []string {
		return append(append([]string{"policy", cmd}, labArgs...), extra...)
	}
	idRe := regexp.MustCompile(`_mta-sts\.[a-z.]+\. 3600 IN TXT "v=STSv1; id=([0-9]{14,})"`)

	t.Run("init prints records and a testing policy for the live MX set", func(t *testing.T) {
		r := run(t, policy("init", "new.test")...)
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"mode: testing", "max_age: 86400", "mx: mx1.new.test", "mx: *.mail.protection.outlook.com",
			`_smtp._tls.new.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@new.test"`, "; EDIT: the report address", "mta-sts.new.test. 3600 IN A 192.0.2.1", "----- mta-sts.txt -----"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("init output lacks %q:\n%s", want, r.stdout)
			}
		}
		if !idRe.MatchString(r.stdout) {
			t.Errorf("no _mta-sts record with a timestamp id:\n%s", r.stdout)
		}
		// Publishing what init printed gives a working testing setup.
		body := r.stdout[strings.Index(r.stdout, "----- mta-sts.txt -----\n")+24 : strings.Index(r.stdout, "----- end -----")]
		l.MustPolicyHost(t, "new.test", lab.PolicyHostOptions{Body: strings.ReplaceAll(body, "\n", "\r\n")})
		l.DNS.MustAdd(t, idRe.FindString(r.stdout), `_smtp._tls.new.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@new.test"`)
		args := []string{"check", "--resolver", l.DNS.Addr(), "--ca-file", labArgs[3]}
		for _, c := range l.ConnectToFlags() {
			args = append(args, "--connect-to", c)
		}
		c := run(t, append(args, "--json", "--no-smtp", "new.test")...)
		if !strings.Contains(c.stdout, `"policy_status":"testing"`) || !strings.Contains(c.stdout, `"grade":"B"`) {
			t.Errorf("after publishing init's output the domain should be in testing, grade B:\n%s", c.stdout)
		}
	})

	t.Run("init --format octodns and json", func(t *testing.T) {
		r := run(t, policy("init", "--format", "octodns", "--rua", "mailto:reports@new.test", "--host-cname", "policies.host.test", "new.test")...)
		for _, want := range []string{"'_mta-sts':", `value: 'v=STSv1\; id=`, "'_smtp._tls':", `'v=TLSRPTv1\; rua=mailto:reports@new.test'`, "'mta-sts':", "type: CNAME", "'policies.host.test.'"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("octodns output lacks %q:\n%s", want, r.stdout)
			}
		}
		j := run(t, policy("init", "--format", "json", "new.test")...)
		var doc struct {
			SchemaVersion int `json:"schema_version"`
			Stages        []struct {
				Policy  string `json:"policy"`
				Records []struct {
					Name, Type, Value, Placeholder string
				} `json:"records"`
			} `json:"stages"`
		}
		if err := json.Unmarshal([]byte(j.stdout), &doc); err != nil || doc.SchemaVersion != 1 || !strings.HasPrefix(doc.Stages[0].Policy, "version: STSv1\r\nmode: testing\r\n") {
			t.Errorf("json: %v %+v", err, doc)
		}
	})

	t.Run("lint a draft, alone and against the live domain", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "bad.txt")
		os.WriteFile(bad, []byte("\ufeffversion: STSv1\nmode: enforce\nmx: mx1.prod.test.\nmax_age: 604800\n"), 0o644)
		r := run(t, policy("lint", bad)...)
		if r.code != ExitFindings || !strings.Contains(r.stdout, "policy-bom") || !strings.Contains(r.stdout, "policy-mx-invalid") || !strings.Contains(r.stdout, "mx: mx1.prod.test\n") {
			t.Errorf("lint of a broken draft: exit %d\n%s", r.code, r.stdout)
		}
		draft := filepath.Join(dir, "draft.txt")
		os.WriteFile(draft, []byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.prod.test\r\nmax_age: 604800\r\n"), 0o644)
		r = run(t, policy("lint", "--domain", "prod.test", draft)...)
		for _, want := range []string{"mx-not-covered", "mx2.prod.test", "sts-id-unchanged", `_mta-sts.prod.test. 3600 IN TXT "v=STSv1; id=`} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("lint --domain lacks %q:\n%s", want, r.stdout)
			}
		}
		r = run(t, policy("lint", "--served-as", "text/html", "--json", draft)...)
		if !strings.Contains(r.stdout, `"id":"policy-content-type"`) || r.code != ExitFindings {
			t.Errorf("lint --served-as text/html: exit %d\n%s", r.code, r.stdout)
		}
		// Exactly these findings, no more (the JSON document lists them).
		for _, tt := range []struct {
			args []string
			want []string
		}{
			{[]string{bad}, []string{"policy-bom:error", "policy-mx-invalid:error"}},
			{[]string{"--domain", "prod.test", draft}, []string{"mx-not-covered:error", "sts-id-unchanged:warning"}},
			{[]string{"--served-as", "text/html", draft}, []string{"policy-content-type:error", "policy-sender-divergence:warning"}},
			{[]string{draft}, nil},
		} {
			r := run(t, policy("lint", append([]string{"--json"}, tt.args...)...)...)
			var doc struct {
				Findings []struct{ ID, Severity string } `json:"findings"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("lint %q: %v\n%s", tt.args, err, r.stdout)
			}
			var got []string
			for _, f := range doc.Findings {
				got = append(got, f.ID+":"+f.Severity)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("lint %q: findings %q, want exactly %q", tt.args, got, tt.want)
			}
		}
	})

	t.Run("promote a ready testing domain", func(t *testing.T) {
		r := run(t, policy("promote", "ready.test")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "mode: enforce") || !strings.Contains(r.stdout, "max_age: 604800") || !idRe.MatchString(r.stdout) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("promote refuses an MX without STARTTLS, unless forced", func(t *testing.T) {
		r := run(t, policy("promote", "notls.test")...)
		if r.code != ExitFindings || !strings.Contains(r.stdout, "REFUSED") || !strings.Contains(r.stdout, "mx2.notls.test") || strings.Contains(r.stdout, "mode: enforce") {
			t.Errorf("exit %d\n%s", r.code, r.stdout)
		}
		f := run(t, policy("promote", "--force", "notls.test")...)
		if f.code != ExitOK || !strings.Contains(f.stdout, "WARNING") || !strings.Contains(f.stdout, "mode: enforce") {
			t.Errorf("--force: exit %d\n%s", f.code, f.stdout)
		}
	})

	t.Run("promote refuses an MX outside the patterns", func(t *testing.T) {
		r := run(t, policy("promote", "uncovered.test")...)
		if r.code != ExitFindings || !strings.Contains(r.stdout, "backup.elsewhere.test matches no mx pattern") {
			t.Errorf("exit %d\n%s", r.code, r.stdout)
		}
	})

	t.Run("retire prints mode none and the earliest removal", func(t *testing.T) {
		r := run(t, policy("retire", "prod.test")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "mode: none") || !strings.Contains(r.stdout, "Earliest safe removal") || !strings.Contains(r.stdout, "; delete: _mta-sts.prod.test.") {
			t.Errorf("exit %d\n%s", r.code, r.stdout)
		}
	})

	t.Run("plan an MX migration", func(t *testing.T) {
		r := run(t, policy("plan", "--add-mx", "mx.newprovider.test", "--add-mx", "mx.badprovider.test", "--remove-mx", "mx2.prod.test", "prod.test")...)
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"mx: mx.newprovider.test", "Switch the MX records", "prod.test. 3600 IN MX 10 mx.newprovider.test.", "; delete: prod.test. IN MX 20 mx2.prod.test.", "Remove the old hosts from the policy", "WARNING: the new MX mx.badprovider.test"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("plan lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "WARNING: the new MX mx.newprovider.test") {
			t.Errorf("the good new MX should pass:\n%s", r.stdout)
		}
	})

	t.Run("a plan that cannot be made says why, in the command's words", func(t *testing.T) {
		r := run(t, policy("plan", "prod.test")...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, "mailtls policy plan: name the MX hosts to add (--add-mx)") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		r = run(t, policy("plan", "--add-mx", "mx.newprovider.test", "new.test")...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, "mailtls policy plan: new.test has no policy in effect (") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{"policy"}, {"policy", "bogus"}, {"policy", "init"}, {"policy", "init", "--format", "xml", "a.test"}, {"policy", "plan", "--add-mx", "not a host", "a.test"}, {"policy", "promote", "--max-age", "99999999999", "a.test"}} {
			if r := run(t, args...); r.code != ExitUsage {
				t.Errorf("%q: exit %d, want 2", args, r.code)
			}
		}
	})
}
