package tlsrptagg

import (
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

func policy(mode mtasts.Mode, mx ...string) *mtasts.Policy {
	return &mtasts.Policy{Version: "STSv1", Mode: mode, MaxAge: 604800, MX: mx}
}

func healthy(hosts ...string) *Scan {
	s := &Scan{At: today, MXKnown: true, MX: map[string]MXState{}}
	for _, h := range hosts {
		s.MX[h] = MXState{Probed: true, Pass: true, DANE: "valid"}
	}
	return s
}

func TestExplain(t *testing.T) {
	g := func(typ tlsrpt.PolicyType, rt tlsrpt.ResultType, mx string, last int) Group {
		return Group{Domain: "x.test", Type: typ, ResultType: rt, MX: mx, Count: 3, First: d(last + 2), Last: d(last), Organizations: []string{"Google Inc."}}
	}
	expired := healthy("mx1.x.test")
	expired.MX["mx2.x.test"] = MXState{Probed: true, Pass: false, Problem: "203.0.113.2: the certificate expired on 2026-06-01", ResultType: tlsrpt.CertificateExpired, DANE: "invalid"}
	notProbed := healthy("mx1.x.test")
	notProbed.MX["mx2.x.test"] = MXState{}
	pol := policy(mtasts.ModeTesting, "mx1.x.test", "mx2.x.test")
	tests := []struct {
		name  string
		g     Group
		cur   Current
		last  time.Time
		label Label
		scope string
		why   string
	}{
		{"C-6 fetch error: policy host", g(tlsrpt.PolicySTS, tlsrpt.STSPolicyFetchError, UnknownMX, 1), Current{Policy: pol, Scan: healthy("mx1.x.test", "mx2.x.test")}, d(1), PolicyHost, ScopeMTASTS, "fall back to no policy"},
		{"webpki invalid: policy host", g(tlsrpt.PolicySTS, tlsrpt.STSWebPKIInvalid, UnknownMX, 1), Current{Policy: pol}, d(1), PolicyHost, ScopeMTASTS, "did not trust"},
		{"no MX in the report", g(tlsrpt.PolicySTS, tlsrpt.ValidationFailure, UnknownMX, 1), Current{Policy: pol}, d(1), Unexplained, ScopeMTASTS, "without a receiving MX"},
		{"C-3 MX not covered (*.mx.microsoft)", Group{Domain: "x.test", Type: tlsrpt.PolicySTS, ResultType: tlsrpt.ValidationFailure, MX: "tenant.x-v1.mx.microsoft", Count: 3, Last: d(1)},
			Current{Policy: policy(mtasts.ModeTesting, "*.mx.microsoft"), Scan: &Scan{MXKnown: true, MX: map[string]MXState{"tenant.x-v1.mx.microsoft": {Probed: true, Pass: true}}}}, d(1), Blocking, ScopeMTASTS,
			`MX not covered by policy: tenant.x-v1.mx.microsoft matches none of the policy's patterns "*.mx.microsoft"`},
		{"not covered, and no longer an MX", g(tlsrpt.PolicySTS, tlsrpt.ValidationFailure, "old.x.test", 5), Current{Policy: pol, Scan: healthy("mx1.x.test", "mx2.x.test")}, d(1), Resolved, ScopeMTASTS, "not an MX"},
		{"not covered, MX lookup failed", g(tlsrpt.PolicySTS, tlsrpt.ValidationFailure, "old.x.test", 5), Current{Policy: pol, Scan: &Scan{}}, d(1), Blocking, ScopeMTASTS, "not covered"},
		{"C-4 expired, still expired today", g(tlsrpt.PolicySTS, tlsrpt.CertificateExpired, "mx2.x.test", 5), Current{Policy: pol, Scan: expired}, d(1), Blocking, ScopeMTASTS, "expired on 2026-06-01 in today's scan too"},
		{"C-4 expired, renewed, later reports clean", g(tlsrpt.PolicySTS, tlsrpt.CertificateExpired, "mx2.x.test", 5), Current{Policy: pol, Scan: healthy("mx1.x.test", "mx2.x.test")}, d(1), Resolved, ScopeMTASTS, "no longer show"},
		{"renewed, but no later report yet", g(tlsrpt.PolicySTS, tlsrpt.CertificateExpired, "mx2.x.test", 1), Current{Policy: pol, Scan: healthy("mx1.x.test", "mx2.x.test")}, d(1), Unexplained, ScopeMTASTS, "no later report"},
		{"validation-failure the scan cannot reproduce", g(tlsrpt.PolicySTS, tlsrpt.ValidationFailure, "mx2.x.test", 1), Current{Policy: pol, Scan: healthy("mx1.x.test", "mx2.x.test")}, d(1), Unexplained, ScopeMTASTS, "mox #237"},
		{"no scan", g(tlsrpt.PolicySTS, tlsrpt.CertificateExpired, "mx2.x.test", 1), Current{Policy: pol}, d(1), Unexplained, ScopeMTASTS, "no scan"},
		{"MX not probed today", g(tlsrpt.PolicySTS, tlsrpt.CertificateExpired, "mx2.x.test", 3), Current{Policy: pol, Scan: notProbed}, d(1), Unexplained, ScopeMTASTS, "could not reach"},
		{"tlsa failure, DANE invalid today", g(tlsrpt.PolicyTLSA, tlsrpt.TLSAInvalid, "mx2.x.test", 3), Current{Policy: pol, Scan: expired}, d(1), Blocking, ScopeDANE, "DANE senders"},
		{"tlsa failure, DANE valid and later clean", g(tlsrpt.PolicyTLSA, tlsrpt.TLSAInvalid, "mx2.x.test", 3), Current{Policy: pol, Scan: healthy("mx2.x.test")}, d(1), Resolved, ScopeDANE, "DANE valid"},
		{"no-policy-found STARTTLS failure", g(tlsrpt.PolicyNotFound, tlsrpt.STARTTLSNotSupported, "mx2.x.test", 3), Current{Policy: pol, Scan: expired}, d(1), Blocking, ScopeNoPolicy, "in today's scan too"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Explain(tt.g, tt.cur, tt.last)
			if e.Label != tt.label || e.Scope != tt.scope || !strings.Contains(e.Why, tt.why) {
				t.Errorf("%s/%s: %s\nwant %s/%s with %q", e.Label, e.Scope, e.Why, tt.label, tt.scope, tt.why)
			}
		})
	}
}

// FromCheck: an address the scanner could not reach is "not probed", not
// failing; one that was judged decides.
func TestFromCheck(t *testing.T) {
	probe := func(c smtpprobe.Class) *smtpprobe.Result { return &smtpprobe.Result{Class: c, Error: string(c)} }
	r := &check.Report{
		Evidence: &scan.Observations{DNS: scan.DNS{MX: &resolve.Answer{Status: resolve.StatusOK}}},
		MX: []check.MX{
			{Host: "MX1.x.test", Addresses: []check.Address{{IP: "192.0.2.1", Probe: probe(""), Pass: true}, {IP: "192.0.2.2", Probe: probe(smtpprobe.ConnectTimeout)}}},
			{Host: "mx2.x.test", Addresses: []check.Address{{IP: "192.0.2.3", Probe: probe(""), CertError: "the certificate expired", ResultType: tlsrpt.CertificateExpired}}, DANE: &check.DANEHost{Status: "none"}},
			{Host: "mx3.x.test", Addresses: []check.Address{{IP: "192.0.2.4", Probe: probe(smtpprobe.ConnectRefused)}}},
			{Host: "mx4.x.test"},
		},
	}
	s := FromCheck(r, today)
	if !s.MXKnown {
		t.Error("MX unknown")
	}
	want := map[string]MXState{
		"mx1.x.test": {Probed: true, Pass: true},
		"mx2.x.test": {Probed: true, Problem: "192.0.2.3: the certificate expired", ResultType: tlsrpt.CertificateExpired, DANE: "none"},
		"mx3.x.test": {},
		"mx4.x.test": {},
	}
	for h, w := range want {
		if got := s.MX[h]; got != w {
			t.Errorf("%s: %+v, want %+v", h, got, w)
		}
	}
	r.Evidence.DNS.MX.Status = resolve.StatusServFail
	if FromCheck(r, today).MXKnown {
		t.Error("SERVFAIL counted as a known MX set")
	}
}
