package tlsrptmail

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// dkimLab is a lab DNS publishing reporters' DKIM keys.
type dkimLab struct {
	dns  *lab.DNS
	res  resolve.Resolver
	keys *lab.DKIMKeys
}

func newDKIMLab(t *testing.T) *dkimLab {
	t.Helper()
	d := lab.NewDNS(t)
	return &dkimLab{dns: d, res: &resolve.Client{Servers: []string{d.Addr()}, Timeout: 2 * time.Second, Attempts: 2}, keys: lab.NewDKIMKeys()}
}

func (l *dkimLab) publish(t *testing.T, selector, dom string, ed bool, extra string) {
	l.keys.Publish(t, l.dns, selector, dom, ed, extra)
}

func (l *dkimLab) sign(t *testing.T, mail, dom, selector string, ed bool) string {
	return l.keys.Sign(t, mail, dom, selector, ed)
}

func (l *dkimLab) signWithL(t *testing.T, mail, dom, selector string) string {
	return l.keys.SignWithL(t, mail, dom, selector)
}

func verifyOne(t *testing.T, l *dkimLab, mail string) *DKIMResult {
	t.Helper()
	m, err := Extract(strings.NewReader(mail), nil)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	res := Verify(context.Background(), []byte(mail), m, l.res)
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	return res[0]
}

// RFC 8460 §3: reports by mail count only with a valid DKIM signature by
// the reporting domain, without l=. The lab DNS publishes the keys.
func TestDKIM(t *testing.T) {
	l := newDKIMLab(t)
	l.publish(t, "tlsrpt", "reporter.test", false, "s=tlsrpt;")
	l.publish(t, "ed", "reporter.test", true, "")
	l.publish(t, "mail", "mail.reporter.test", true, "s=email:tlsrpt;")
	l.publish(t, "other", "attacker.test", true, "")
	l.publish(t, "web", "web.reporter.test", true, "s=http;")
	l.publish(t, "flaky", "flaky.test", true, "")
	l.dns.SetRcode("flaky._domainkey.flaky.test", dns.TypeTXT, dns.RcodeServerFailure)
	rep := testReport(t, "reporter.test", "r1@reporter.test", "example.test", day, 90, 10)
	mail := reportMail("", gzipPart("application/tlsrpt+gzip", rep))

	tests := []struct {
		name    string
		mail    string
		status  DKIMStatus
		service bool
		reason  string
	}{
		{"RSA signature by the reporting domain, key with s=tlsrpt", l.sign(t, mail, "reporter.test", "tlsrpt", false), DKIMPass, true, "reporter.test"},
		{"Ed25519 signature, key without s=", l.sign(t, mail, "reporter.test", "ed", true), DKIMPass, false, "does not declare the tlsrpt service type"},
		{"signature by a subdomain (Mail.ru's corp.mail.ru)", l.sign(t, mail, "mail.reporter.test", "mail", true), DKIMPass, true, "mail.reporter.test"},
		{"LF line endings as stored in a file", strings.ReplaceAll(l.sign(t, mail, "reporter.test", "ed", true), "\r\n", "\n"), DKIMPass, false, ""},
		{"unsigned", mail, DKIMNone, false, "must be ignored"},
		{"l= signature, valid for verifiers that allow it", l.signWithL(t, mail, "reporter.test", "ed"), DKIMBodyLength, false, "l="},
		{"l= signature with data appended", l.signWithL(t, mail, "reporter.test", "ed") + "--BOUNDARY--\r\nappended\r\n", DKIMBodyLength, false, "l="},
		{"tampered body", strings.Replace(l.sign(t, mail, "reporter.test", "tlsrpt", false), "This is an aggregate", "This is a forged", 1), DKIMFail, false, "body hash"},
		{"tampered header", strings.Replace(l.sign(t, mail, "reporter.test", "tlsrpt", false), "To: tlsrpt@example.test", "To: other@example.test", 1), DKIMFail, false, "signature did not verify"},
		{"valid signature by another domain", l.sign(t, mail, "attacker.test", "other", true), DKIMUnaligned, false, "none by the reporting domain reporter.test"},
		{"no key published", l.sign(t, mail, "reporter.test", "missing", true), DKIMFail, false, "no key"},
		{"key for another service (s=http)", l.sign(t, mail, "web.reporter.test", "web", true), DKIMFail, false, "inappropriate service"},
		{"key lookup SERVFAIL", l.sign(t, reportMail("", gzipPart("application/tlsrpt+gzip", testReport(t, "flaky.test", "f1", "example.test", day, 1, 0))), "flaky.test", "flaky", true), DKIMTempError, false, "retry"},
		{"a bad signature beside a good one", l.sign(t, l.sign(t, mail, "attacker.test", "nokey", true), "reporter.test", "ed", true), DKIMPass, false, ""},
		{"a good foreign signature beside a failing own one", l.sign(t, l.sign(t, mail, "reporter.test", "missing", true), "attacker.test", "other", true), DKIMUnaligned, false, "none by the reporting domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := verifyOne(t, l, tt.mail)
			if r.Status != tt.status || r.ServiceTLSRPT != tt.service || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("status %s (service %v): %s\nwant %s (service %v) with %q\n%+v", r.Status, r.ServiceTLSRPT, r.Reason, tt.status, tt.service, tt.reason, r.Signatures)
			}
			if r.Counts() != (tt.status == DKIMPass) {
				t.Errorf("Counts() = %v", r.Counts())
			}
			switch ign := r.Ignored(); {
			case tt.status == DKIMPass && ign != "":
				t.Errorf("a passing report says %q", ign)
			case tt.status == DKIMTempError && !strings.HasPrefix(ign, "not counted yet"):
				t.Errorf("temperror says %q", ign)
			case tt.status != DKIMPass && tt.status != DKIMTempError && !strings.HasPrefix(ign, "ignored: no valid DKIM signature ("):
				t.Errorf("%s says %q", tt.status, ign)
			}
		})
	}
}

// The reporting domain comes from the report's contact-info, then the
// TLS-Report-Submitter, then a domain-like organization-name, then From.
func TestReportingDomain(t *testing.T) {
	tests := []struct {
		name, contact, org string
		env                Envelope
		want, from         string
	}{
		{"contact-info (Google)", "smtp-tls-reporting@google.com", "Google Inc.", Envelope{Submitter: "google.com", FromDomain: "google.com"}, "google.com", "contact-info"},
		{"contact-info over Submitter (Mail.ru)", "tls_support@corp.mail.ru", "Mail.ru", Envelope{Submitter: "mail.ru", FromDomain: "corp.mail.ru"}, "corp.mail.ru", "contact-info"},
		{"contact-info null: Submitter (Stalwart)", "", "refluxstop.de", Envelope{Submitter: "mx.refluxstop.de", FromDomain: "refluxstop.de"}, "mx.refluxstop.de", "TLS-Report-Submitter"},
		{"no Submitter: organization-name host", "", "mx.egressif.io", Envelope{FromDomain: "egressif.io"}, "mx.egressif.io", "organization-name"},
		{"only From", "", "Some Org", Envelope{FromDomain: "sender.test"}, "sender.test", "From"},
		{"nothing", "", "Some Org", Envelope{}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, from := ReportingDomain(&tlsrpt.Report{ContactInfo: tt.contact, OrganizationName: tt.org}, &tt.env)
			if d != tt.want || from != tt.from {
				t.Errorf("got %q from %q, want %q from %q", d, from, tt.want, tt.from)
			}
		})
	}
}

func TestAligned(t *testing.T) {
	for _, tt := range []struct {
		signer, reporting string
		want              bool
	}{
		{"google.com", "google.com", true},
		{"corp.mail.ru", "mail.ru", true},
		{"mail.ru", "corp.mail.ru", true},
		{"Google.COM.", "google.com", true},
		{"evil-google.com", "google.com", false},
		{"example.co.uk", "other.co.uk", false},
		{"a.example.co.uk", "b.example.co.uk", true},
		{"", "google.com", false},
	} {
		if got := Aligned(tt.signer, tt.reporting); got != tt.want {
			t.Errorf("Aligned(%q, %q) = %v", tt.signer, tt.reporting, got)
		}
	}
}

// Judge without crypto: the order of verdicts.
func TestJudge(t *testing.T) {
	rep := &tlsrpt.Report{ContactInfo: "r@reporter.test"}
	ok := Signature{Domain: "reporter.test", Selector: "s", Valid: true}
	tests := []struct {
		name string
		sigs []Signature
		want DKIMStatus
	}{
		{"none", nil, DKIMNone},
		{"pass", []Signature{ok}, DKIMPass},
		{"temp beats fail", []Signature{{Domain: "reporter.test", Temporary: true, Error: "x"}}, DKIMTempError},
		{"l= only", []Signature{{Domain: "reporter.test", BodyLength: true, Error: "l="}}, DKIMBodyLength},
		{"foreign l= is just unaligned-invalid", []Signature{{Domain: "x.test", BodyLength: true, Error: "l="}}, DKIMFail},
		{"pass beats l=", []Signature{{Domain: "reporter.test", BodyLength: true}, ok}, DKIMPass},
		{"foreign valid", []Signature{{Domain: "x.test", Valid: true}}, DKIMUnaligned},
		{"unreadable message", []Signature{{Error: "the message could not be read"}}, DKIMFail},
	}
	for _, tt := range tests {
		if got := Judge(tt.sigs, rep, &Envelope{}); got.Status != tt.want || got.Reason == "" {
			t.Errorf("%s: %s (%s), want %s", tt.name, got.Status, got.Reason, tt.want)
		}
	}
}

// The real samples: their signatures cannot be checked in the lab (the
// keys are real and most mails were trimmed), so they fail or are
// unsigned, never pass, and Verify does not choke on them.
func TestDKIMSamples(t *testing.T) {
	dir := lab.Shared(t, "tlsrpt-samples")
	l := newDKIMLab(t)
	for _, name := range []string{"isseis-tlsrpt_failure.eml", "kravietz-mail.ru.eml", "mox-microsoft-2023-01-10.eml", "stalwart-rpt01.eml"} {
		raw, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Extract(bytes.NewReader(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range Verify(context.Background(), raw, m, l.res) {
			if r.Counts() || r.Reason == "" {
				t.Errorf("%s: %+v", name, r)
			}
			if m.Envelope.DKIMSignatures > 0 && r.Status != DKIMFail {
				t.Errorf("%s: signed but %s (%s)", name, r.Status, r.Reason)
			}
		}
	}
}
