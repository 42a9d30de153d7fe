package check_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/webpki"
)

// lintIDs lists the findings of a lint report as "id:severity", sorted.
func lintIDs(r *check.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s:%s", f.ID, f.Severity))
	}
	slices.Sort(out)
	return out
}

const lintGood = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n"

// TestLint: a draft is linted with the rules of a scan, and reports
// exactly these findings, no more (RFC 8461 §3.2, §3.3; spec-checklist
// §C). Fixes says whether a canonical rewrite is offered.
func TestLint(t *testing.T) {
	tests := []struct {
		name, draft, servedAs string
		want                  []string
		fix                   bool
	}{
		{"good enforce policy", lintGood, "", nil, false},
		{"STS-POL-2 AMB-1 LF line endings are accepted", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n", "",
			[]string{"policy-testing:info"}, false},
		{"STS-POL-17 MISC-25 BOM and MISC-30 mx with a trailing dot", "\ufeffversion: STSv1\nmode: enforce\nmx: mx1.prod.test.\nmax_age: 604800\n", "",
			[]string{"policy-bom:error", "policy-mx-invalid:error"}, true},
		{"STS-POL-10 no mx in enforce", "version: STSv1\r\nmode: enforce\r\nmax_age: 604800\r\n", "",
			[]string{"policy-mx-missing:error"}, false},
		{"MISC-17 max_age 0", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 0\r\n", "",
			[]string{"policy-max-age-low:warning"}, true},
		{"STS-POL-7 MISC-29 invalid mode", "version: STSv1\r\nmode: enforced\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n", "",
			[]string{"policy-mode:error"}, false},
		{"STS-POL-14 conflicting duplicate key", "version: STSv1\r\nmode: enforce\r\nmode: testing\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n", "",
			[]string{"policy-duplicate-key:error", "policy-sender-divergence:warning"}, true},
		{"STS-POL-20 wildcard under a public suffix", "version: STSv1\r\nmode: enforce\r\nmx: *.com\r\nmax_age: 604800\r\n", "",
			[]string{"policy-mx-public-suffix:warning"}, true},
		{"mode none", "version: STSv1\r\nmode: none\r\nmax_age: 3600\r\n", "",
			[]string{"policy-mode-none:info"}, false},
		{"STS-POL-1 empty file", "", "", []string{"policy-empty:error"}, false},
		{"MISC-8 an HTML page", "<!DOCTYPE html><html><body>x</body></html>", "", []string{"policy-html:error"}, false},
		{"STS-FETCH-12 larger than 64 KiB", lintGood + strings.Repeat("x-pad: 0\r\n", 7000), "", []string{"policy-too-large:error"}, false},
		{"STS-FETCH-10 MISC-5 served as text/html", lintGood, "text/html",
			[]string{"policy-content-type:error", "policy-sender-divergence:warning"}, false},
		{"STS-FETCH-11 served with another charset", lintGood, "text/plain; charset=iso-8859-1",
			[]string{"policy-charset:warning"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := check.Lint([]byte(tt.draft), check.LintOptions{ServedAs: tt.servedAs, Now: now})
			if got := lintIDs(r); !slices.Equal(got, tt.want) {
				t.Errorf("findings %q, want exactly %q", got, tt.want)
			}
			if hasFix := slices.ContainsFunc(r.Fixes, func(f check.Fix) bool { return f.Kind == check.FixPolicy }); hasFix != tt.fix {
				t.Errorf("policy fix offered: %v, want %v (%+v)", hasFix, tt.fix, r.Fixes)
			}
			if r.Domain != "" || r.Grade != "" || r.Evidence != nil {
				t.Errorf("a lint without a domain has no domain, grade or evidence: %q %q %v", r.Domain, r.Grade, r.Evidence)
			}
		})
	}
}

// liveObservations is a scan of example.com: MX hosts mx1 and mx2, and
// the published policy (id 20261101).
func liveObservations(published string) *scan.Observations {
	d := "example.com"
	ok := func(name, typ string) *resolve.Answer {
		return &resolve.Answer{Name: name, Type: typ, Status: resolve.StatusOK, Rcode: "NOERROR"}
	}
	sts := ok("_mta-sts."+d, "TXT")
	sts.Records = []resolve.Record{{Name: sts.Name, Type: "TXT", TTL: 300, Text: []string{"v=STSv1; id=20261101"}}}
	mx := ok(d, "MX")
	hosts := []*scan.MXHost{}
	for i, h := range []string{"mx1.example.com", "mx2.example.com"} {
		mx.Records = append(mx.Records, resolve.Record{Name: d, Type: "MX", Preference: uint16(10 * (i + 1)), Host: h})
		a := ok(h, "A")
		a.Records = []resolve.Record{{Name: h, Type: "A", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(25 + i)})}}
		aaaa := ok(h, "AAAA")
		aaaa.Status = resolve.StatusNoData
		hosts = append(hosts, &scan.MXHost{Host: h, Preference: uint16(10 * (i + 1)), A: a, AAAA: aaaa})
	}
	hostA := ok("mta-sts."+d, "A")
	hostA.Records = []resolve.Record{{Name: hostA.Name, Type: "A", Addr: netip.MustParseAddr("192.0.2.80")}}
	hostAAAA := ok("mta-sts."+d, "AAAA")
	hostAAAA.Status = resolve.StatusNoData
	nx := func(name string) *resolve.Answer {
		a := ok(name, "TXT")
		a.Status, a.Rcode = resolve.StatusNXDomain, "NXDOMAIN"
		return a
	}
	return &scan.Observations{
		Domain: d, PolicyHost: "mta-sts." + d,
		DNS: scan.DNS{STS: sts, STSDraft: nx("_mta_sts." + d), Apex: nx(d), TLSRPT: nx("_smtp._tls." + d), TLSRPTDraft: nx("_smtp-tlsrpt." + d),
			TLSRPTDraftUnder: nx("_smtp_tlsrpt." + d), MX: mx, PolicyHostA: hostA, PolicyHostAAAA: hostAAAA},
		Fetches: []*fetch.Result{{URL: "https://mta-sts." + d + fetch.Path, Host: "mta-sts." + d, Address: "192.0.2.80:443",
			TLS:    &fetch.TLS{Version: "TLS 1.3", Verdict: webpki.Verdict{Trusted: true, NameMatch: true}},
			Status: 200, Header: map[string]string{"Content-Type": "text/plain"}, Body: fetch.Body(published), BodyBytes: int64(len(published))}},
		MXHosts: hosts,
	}
}

// TestLintLive: with a scan of the domain, the draft is also matched
// against the live MX set in both directions and compared with the
// published policy (RFC 8461 §3.1: a changed policy needs a new id; §4.1).
func TestLintLive(t *testing.T) {
	published := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"
	tests := []struct {
		name, draft string
		want        []string
		newID       bool // a TXT record with a new id is among the fixes
	}{
		{"the published policy itself", published, nil, false},
		{"MISC-9 a draft that leaves mx2 out", lintGood,
			[]string{"mx-not-covered:error", "sts-id-unchanged:warning"}, true},
		{"STS-POL-21 a stale pattern", published[:len(published)-len("max_age: 604800\r\n")] + "mx: old.example.com\r\nmax_age: 604800\r\n",
			[]string{"mx-pattern-stale:info", "sts-id-unchanged:warning"}, true},
		{"a longer max_age only", strings.Replace(published, "604800", "1209600", 1),
			[]string{"sts-id-unchanged:warning"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := check.Lint([]byte(tt.draft), check.LintOptions{Live: liveObservations(published), Now: now})
			if got := lintIDs(r); !slices.Equal(got, tt.want) {
				t.Errorf("findings %q, want exactly %q", got, tt.want)
			}
			newID := slices.ContainsFunc(r.Fixes, func(f check.Fix) bool {
				return f.Kind == check.FixDNS && f.Name == "_mta-sts.example.com" && f.Value != "v=STSv1; id=20261101"
			})
			if newID != tt.newID {
				t.Errorf("new id among the fixes: %v, want %v (%+v)", newID, tt.newID, r.Fixes)
			}
			for _, f := range r.Findings {
				if f.ID == finding.STSIDUnchanged && !strings.Contains(f.Message, "id 20261101") {
					t.Errorf("sts-id-unchanged does not name the published id: %s", f.Message)
				}
			}
		})
	}
}
