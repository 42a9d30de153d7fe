package check_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/fetch"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
)

// now is the clock of every evaluation in these tests.
var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.%[1]s\r\nmx: *.mail.%[1]s\r\nmax_age: 604800\r\n"

// labScanner scans through d (the lab's dialer, or a guarded one) with
// the lab's test deadlines (lab.DNSTimeout and the others), and probes the
// MX hosts over SMTP when probe is set.
func labScanner(l *lab.Lab, d *dial.Dialer, probe bool) *scan.Scanner {
	s := &scan.Scanner{
		Resolver: &resolve.Client{Servers: []string{l.DNS.Addr()}, Timeout: lab.DNSTimeout, Attempts: lab.DNSAttempts},
		Fetcher: &fetch.Fetcher{Dialer: d, Roots: l.CA.Pool(),
			ConnectTimeout: lab.ConnectTimeout, HandshakeTimeout: lab.HandshakeTimeout, ResponseTimeout: lab.ResponseTimeout},
		Dialer: d,
	}
	if probe {
		s.Prober = &smtpprobe.Prober{Dialer: d, Roots: l.CA.Pool(), EHLO: "scanner.example.test",
			ConnectTimeout: lab.ConnectTimeout, BannerTimeout: lab.SMTPTimeout, CommandTimeout: lab.SMTPTimeout, HandshakeTimeout: lab.HandshakeTimeout}
	}
	return s
}

// scanLab scans domain in the lab without SMTP probes and evaluates it.
func scanLab(t *testing.T, l *lab.Lab, domain string) *check.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lab.ScanBudget)
	defer cancel()
	o := labScanner(l, l.Dialer(), false).Scan(ctx, domain)
	return check.Evaluate(o, now)
}

// world is a domain in the lab, built up by the scenario.
type world struct {
	t *testing.T
	l *lab.Lab
	d string
}

func (w world) dns(lines ...string) {
	w.t.Helper()
	for i, s := range lines {
		lines[i] = strings.ReplaceAll(s, "$D", w.d)
	}
	w.l.DNS.MustAdd(w.t, lines...)
}

// mail publishes two MX hosts: mx1.$D and b.mail.$D.
func (w world) mail() {
	w.dns("$D. 300 IN MX 10 mx1.$D.", "$D. 300 IN MX 20 b.mail.$D.", "mx1.$D. 300 IN A 192.0.2.25", "b.mail.$D. 300 IN A 192.0.2.26")
}

func (w world) sts(txt ...string) {
	for _, t := range txt {
		w.dns(`_mta-sts.$D. 300 IN TXT ` + t)
	}
}

func (w world) tlsrpt() { w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@$D"`) }

// policy serves body (with %[1]s replaced by the domain) as text/plain.
func (w world) policy(body string) {
	w.serve(lab.Static(200, "text/plain; charset=utf-8", w.body(body)))
}

// body fills the domain into a policy template.
func (w world) body(tmpl string) string { return strings.ReplaceAll(tmpl, "%[1]s", w.d) }

// coded serves body as text/plain with the Content-Encoding that choose
// picks for the request's Accept-Encoding header, the body compressed as
// "gzip" or "deflate", or sent as it is ("plain") whatever the label says.
func coded(body string, choose func(acceptEncoding string) (contentEncoding, payload string)) http.Handler {
	var gz, zl bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, body)
	_ = zw.Close()
	fw := zlib.NewWriter(&zl)
	_, _ = io.WriteString(fw, body)
	_ = fw.Close()
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ce, payload := choose(r.Header.Get("Accept-Encoding"))
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ce != "" {
			rw.Header().Set("Content-Encoding", ce)
		}
		switch payload {
		case "gzip":
			_, _ = rw.Write(gz.Bytes())
		case "deflate":
			_, _ = rw.Write(zl.Bytes())
		default:
			_, _ = io.WriteString(rw, body)
		}
	})
}

// namesEverySender checks that the finding names every modelled sender.
func namesEverySender(id finding.ID) func(t *testing.T, r *check.Report) {
	return func(t *testing.T, r *check.Report) {
		t.Helper()
		var msgs []string
		for _, f := range r.Findings {
			if f.ID == id {
				msgs = append(msgs, f.Message)
			}
		}
		all := strings.Join(msgs, " ")
		for _, s := range []string{"mox", "postfix-mta-sts-resolver", "postfix-tlspol", "go-mtasts"} {
			if !strings.Contains(all, s) {
				t.Errorf("%s does not name %s: %q", id, s, msgs)
			}
		}
	}
}

func (w world) serve(h http.Handler) { w.l.MustPolicyHost(w.t, w.d, lab.PolicyHostOptions{Handler: h}) }

func (w world) serveWith(cert tls.Certificate, h http.Handler, o lab.HostOptions) {
	w.l.MustPolicyHost(w.t, w.d, lab.PolicyHostOptions{Handler: h, Cert: cert, TLS: o})
}

// good builds a domain that deserves an A.
func (w world) good() {
	w.mail()
	w.sts(`"v=STSv1; id=20261101"`)
	w.tlsrpt()
	w.policy(goodPolicy)
}

// want is a finding a scenario expects. A scenario lists every error and
// warning it expects, and nothing else of those severities may be
// reported; an info finding it lists must be there too, beside others.
type want struct {
	id  finding.ID
	sev finding.Severity
}

// checkFindings compares the findings of r with the scenario's: every
// wanted finding is there, no error or warning that is not wanted, and
// none of the IDs in not.
func checkFindings(t *testing.T, r *check.Report, wants []want, not []finding.ID) {
	t.Helper()
	for _, wnt := range wants {
		if !slices.ContainsFunc(r.Findings, func(f finding.Finding) bool { return f.ID == wnt.id && f.Severity == wnt.sev }) {
			t.Errorf("missing %s %s; got:\n%s", wnt.sev, wnt.id, dump(r))
		}
	}
	reported := map[want]bool{}
	for _, f := range r.Findings {
		w := want{f.ID, f.Severity}
		if f.Severity >= finding.Warning && !slices.Contains(wants, w) && !reported[w] {
			reported[w] = true
			t.Errorf("unexpected %s %s: %s", f.Severity, f.ID, f.Message)
		}
	}
	for _, id := range not {
		if slices.ContainsFunc(r.Findings, func(f finding.Finding) bool { return f.ID == id }) {
			t.Errorf("unexpected %s; got:\n%s", id, dump(r))
		}
	}
}

type scenario struct {
	name   string // checklist ID and case
	setup  func(w world)
	status check.Status
	grade  finding.Grade // "" = no grade (undetermined)
	want   []want
	not    []finding.ID // must not be reported
	check  func(t *testing.T, r *check.Report)
	// fixable: applying the report's fixes (records, policy file, and the
	// notes about the web server) must clear every problem.
	fixable bool
}

func TestScenarios(t *testing.T) {
	l := lab.New(t)
	for i, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, l, i, sc)
			sc.setup(w)
			r := scanLab(t, l, w.d)
			if r.Status != sc.status {
				t.Errorf("status %s (%s), want %s", r.Status, r.StatusReason, sc.status)
			}
			if r.Grade != sc.grade {
				t.Errorf("grade %q, want %q; reasons %q", r.Grade, sc.grade, r.GradeReasons)
			}
			checkFindings(t, r, sc.want, sc.not)
			for _, f := range r.Findings {
				if f.Message == "" || f.Ref == "" || (f.Severity >= finding.Warning && f.Fix == "") {
					t.Errorf("incomplete finding %+v", f)
				}
				if strings.Contains(f.Fix, "<id>") || strings.Contains(f.Fix, "<domain>") {
					t.Errorf("unfilled placeholder in %s fix: %s", f.ID, f.Fix)
				}
			}
			if sc.check != nil {
				sc.check(t, r)
			}
		})
	}
}

func newWorld(t *testing.T, l *lab.Lab, i int, sc scenario) world {
	d := fmt.Sprintf("s%d.test", i)
	if strings.Contains(sc.name, "subdomain") {
		d = fmt.Sprintf("mail.s%d.example.com", i)
	}
	return world{t: t, l: l, d: d}
}

func scenarios() []scenario {
	return []scenario{
		{name: "good enforce policy", setup: func(w world) { w.good() }, status: check.StatusEnforce, grade: finding.GradeA,
			check: func(t *testing.T, r *check.Report) {
				if len(r.Fixes) != 0 {
					t.Errorf("a good domain needs no fixes, got %+v", r.Fixes)
				}
				if r.Policy == nil || r.PolicyID != "20261101" || len(r.MX) != 2 || !*r.MX[0].Covered || !*r.MX[1].Covered {
					t.Errorf("policy %+v id %q mx %+v", r.Policy, r.PolicyID, r.MX)
				}
			}},
		{name: "no MTA-STS at all", fixable: true, setup: func(w world) { w.mail() }, status: check.StatusAbsent, grade: finding.GradeF,
			want: []want{{finding.STSRecordMissing, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				kinds := fixKinds(r)
				if !slices.Contains(kinds, "policy") || !slices.Contains(kinds, "dns:publish:_mta-sts") || !slices.Contains(kinds, "dns:publish:_smtp._tls") || !slices.Contains(kinds, "note") {
					t.Errorf("want a complete setup as fixes, got %v", kinds)
				}
			}},

		// §A: the _mta-sts TXT record.
		{name: "STS-TXT-1 record at the apex", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.dns(`$D. 300 IN TXT "v=STSv1; id=1"`); w.policy(goodPolicy) },
			status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSRecordAtApex, finding.Error}, {finding.STSPolicyNotAdvertised, finding.Error}}},
		{name: "STS-TXT-2 multi-string record", setup: func(w world) {
			w.good()
			w.l.DNS.RemoveName("_mta-sts." + w.d)
			w.sts(`"v=STSv1; id=2024" "0101"`)
		}, status: check.StatusEnforce, grade: finding.GradeA, check: func(t *testing.T, r *check.Report) {
			if r.PolicyID != "20240101" {
				t.Errorf("id %q, want the strings joined", r.PolicyID)
			}
		}},
		{name: "STS-TXT-3 MISC-23 unrelated TXT beside the record", fixable: true, setup: func(w world) { w.good(); w.sts(`"google-site-verification=abc"`) },
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.STSRecordUnrelatedTXT, finding.Warning}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-TXT-4 MISC-22 two records", fixable: true, setup: func(w world) { w.good(); w.sts(`"v=STSv1; id=2"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordMultiple, finding.Error}}},
		{name: "STS-TXT-5 no id", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1;"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordSyntax, finding.Error}, {finding.STSRecordIDMissing, finding.Error}}},
		{name: "STS-TXT-6 MISC-31 literal quotes", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"\"v=STSv1; id=1\""`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordQuoted, finding.Error}}},
		{name: "STS-TXT-6 wrong case", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"V=STSv1; id=1"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordVersion, finding.Error}}},
		// RFC 8461 §3.1: a single record is parsed by the grammar, which
		// allows blanks around ';'; the "v=STSv1;" filter applies only when
		// several TXT records come back.
		{name: "STS-TXT-7 space before semicolon, single record", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1 ; id=1"`) },
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.STSRecordSpaceBeforeSemicolon, finding.Warning}},
			not: []finding.ID{finding.PolicySenderDivergence}},
		{name: "STS-TXT-7 space before semicolon beside another TXT record", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.policy(goodPolicy)
			w.sts(`"v=STSv1 ; id=1"`, `"google-site-verification=abc"`)
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordSpaceBeforeSemicolon, finding.Error}, {finding.STSRecordUnrelatedTXT, finding.Warning}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "RPT-TXT-4 space before semicolon, single TLS-RPT record", fixable: true, setup: func(w world) {
			w.mail()
			w.policy(goodPolicy)
			w.sts(`"v=STSv1; id=1"`)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1 ; rua=mailto:tlsrpt@$D"`)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.TLSRPTSpaceBeforeSemicolon, finding.Warning}},
			not: []finding.ID{finding.TLSRPTMissing}, check: func(t *testing.T, r *check.Report) {
				if r.TLSRPT == nil || len(r.TLSRPT.Usable) != 1 {
					t.Errorf("TLS-RPT record not used: %+v", r.TLSRPT)
				}
			}},
		{name: "RPT-TXT-3 space before semicolon beside another TXT record", fixable: true, setup: func(w world) {
			w.mail()
			w.policy(goodPolicy)
			w.sts(`"v=STSv1; id=1"`)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1 ; rua=mailto:tlsrpt@$D"`, `_smtp._tls.$D. 300 IN TXT "other"`)
		}, status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTSpaceBeforeSemicolon, finding.Error}}, check: func(t *testing.T, r *check.Report) {
			if r.TLSRPT != nil {
				t.Errorf("a TLS-RPT record senders discard is reported as the record: %+v", r.TLSRPT)
			}
		}},
		{name: "STS-TXT-8 space around equals", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1; id = 1"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordSpaceAroundEquals, finding.Error}}},
		{name: "STS-TXT-9 MISC-16 hyphenated id", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=2024-01-01"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordIDInvalid, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-TXT-10 duplicate id", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1; id=2"`) },
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.STSRecordIDDuplicate, finding.Warning}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-TXT-12 extension field", setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1; foo=bar"`) },
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.STSRecordExtension, finding.Info}}},
		{name: "STS-TXT-13 non-breaking space", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1;\194\160id=1"`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordNonASCII, finding.Error}, {finding.STSRecordIDMissing, finding.Error}, {finding.STSRecordSyntax, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-TXT-14 trailing space", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1 "`) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.STSRecordTrailingSpace, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-TXT-15 delegated by CNAME", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.policy(goodPolicy)
			w.dns(`_mta-sts.$D. 300 IN CNAME _mta-sts.provider.test.`, `_mta-sts.provider.test. 300 IN TXT "v=STSv1; id=9"`)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.STSRecordDelegated, finding.Info}}},
		{name: "STS-TXT-15 dangling CNAME", fixable: true, setup: func(w world) {
			w.mail()
			w.policy(goodPolicy)
			w.dns(`_mta-sts.$D. 300 IN CNAME _mta-sts.gone.test.`)
		}, status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSRecordDanglingCNAME, finding.Error}, {finding.STSPolicyNotAdvertised, finding.Error}}},
		{name: "STS-TXT-16 SERVFAIL is not absence", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("_mta-sts."+w.d, dns.TypeTXT, dns.RcodeServerFailure)
		}, status: check.StatusUndetermined, grade: "", want: []want{{finding.STSRecordUndetermined, finding.Warning}},
			not: []finding.ID{finding.STSRecordMissing, finding.STSPolicyNotAdvertised}},
		{name: "STS-TXT-16 timeout is not absence", setup: func(w world) {
			w.good()
			w.l.DNS.Drop("_mta-sts."+w.d, dns.TypeTXT)
		}, status: check.StatusUndetermined, grade: "", want: []want{{finding.STSRecordUndetermined, finding.Warning}},
			not: []finding.ID{finding.STSRecordMissing}},
		{name: "STS-TXT-16 truncated over UDP and TCP is not absence", setup: func(w world) {
			w.good()
			w.l.DNS.TruncateAlways("_mta-sts."+w.d, dns.TypeTXT)
		}, status: check.StatusUndetermined, grade: "", want: []want{{finding.STSRecordUndetermined, finding.Warning}},
			not:   []finding.ID{finding.STSRecordMissing, finding.STSPolicyNotAdvertised},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.STSRecordUndetermined, "truncated") }},
		{name: "truncated MX answer is not an implicit MX", setup: func(w world) {
			w.good()
			w.l.DNS.TruncateAlways(w.d, dns.TypeMX)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXUndetermined, finding.Warning}},
			not: []finding.ID{finding.MXImplicit, finding.MXNotCovered}},
		{name: "STS-TXT-17 MISC-2 policy online without a record", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.policy(goodPolicy) },
			status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSPolicyNotAdvertised, finding.Error}}},
		{name: "STS-TXT-18 zone wildcard answers _mta-sts", fixable: true, setup: func(w world) { w.mail(); w.dns(`*.$D. 300 IN TXT "v=spf1 -all"`) },
			status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSRecordWildcard, finding.Warning}},
			not: []finding.ID{finding.STSRecordUnrelatedTXT}},
		{name: "STS-TXT-19 MISC-33 subdomain does not inherit", setup: func(w world) { w.mail() },
			status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSSubdomain, finding.Info}}},
		{name: "STS-TXT-21 long TTL", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.policy(goodPolicy)
			w.dns(`_mta-sts.$D. 86400 IN TXT "v=STSv1; id=1"`)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.STSRecordTTL, finding.Info}}},
		{name: "MISC-32 draft-era record name", fixable: true, setup: func(w world) { w.mail(); w.dns(`_mta_sts.$D. 300 IN TXT "v=STSv1; id=1"`); w.policy(goodPolicy) },
			status: check.StatusAbsent, grade: finding.GradeF, want: []want{{finding.STSRecordDraftName, finding.Error}, {finding.STSPolicyNotAdvertised, finding.Error}}},

		// §B: the policy host and the fetch.
		{name: "STS-FETCH-16 MISC-1 policy host does not resolve", fixable: true, setup: func(w world) { w.mail(); w.tlsrpt(); w.sts(`"v=STSv1; id=1"`) },
			status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyHostNoAddress, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				if !slices.Contains(fixKinds(r), "note") || !slices.Contains(fixKinds(r), "policy") {
					t.Errorf("want a policy and a note about the host, got %v", fixKinds(r))
				}
			}},
		{name: "STS-FETCH-16 policy host lookup fails", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mta-sts."+w.d, dns.TypeANY, dns.RcodeServerFailure)
		}, status: check.StatusUndetermined, grade: "", want: []want{{finding.PolicyHostUndetermined, finding.Warning}},
			not: []finding.ID{finding.PolicyHostNoAddress}},
		{name: "STS-FETCH-16 MISC-34 only one of two addresses works", setup: func(w world) {
			w.good()
			w.dns("mta-sts.$D. 300 IN A " + w.l.MustRefusedAddr(w.t, 443).String()) // refused
		}, status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.PolicyFetchPartial, finding.Warning}}},
		{name: "STS-FETCH-2 MISC-1 connection refused", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.dns("mta-sts.$D. 300 IN A " + w.l.MustRefusedAddr(w.t, 443).String()) // refused
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyFetchFailed, finding.Error}}},
		{name: "STS-FETCH-3 TLS 1.1 only", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(tls.Certificate{}, lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyTLSVersion, finding.Error}}},
		{name: "STS-FETCH-3 no TLS version in common (protocol_version alert)", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			alert := lab.NewReply(w.t, []byte{21, 3, 3, 0, 2, 2, 70}) // fatal protocol_version (RFC 8446 §6)
			addr := w.l.NextAddr()
			if err := w.l.MapAddr(alert.Addr(), addr, 443); err != nil {
				w.t.Fatal(err)
			}
			w.dns("mta-sts.$D. 300 IN A " + addr.String())
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyTLSVersion, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.PolicyTLSVersion, "no TLS version senders accept")
			}},
		{name: "STS-FETCH-6 MISC-3 certificate for the wrong name", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts.provider.test"}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertNameMismatch, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				// The body is still linted: the policy itself is fine.
				for _, f := range r.Findings {
					if f.Component == finding.ComponentPolicy && f.Severity == finding.Error {
						t.Errorf("policy error reported for a good body: %s", f.Message)
					}
				}
			}},
		{name: "NAME-2 CN-only certificate", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{CommonName: "mta-sts." + w.d}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertNameMismatch, finding.Error}}},
		{name: "STS-FETCH-6 wildcard certificate", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"*." + w.d}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusEnforce, grade: finding.GradeA},
		{name: "STS-FETCH-5 self-signed", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, SelfSigned: true}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertUntrusted, finding.Error}}},
		{name: "STS-FETCH-5 MISC-4 untrusted CA", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.Untrusted.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertUntrusted, finding.Error}}},
		{name: "STS-FETCH-5 MISC-4 expired", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			c := w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, NotBefore: time.Now().Add(-90 * 24 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			w.serveWith(c, lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertExpired, finding.Error}}},
		{name: "STS-FETCH-5 MISC-4 incomplete chain", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, OmitIntermediate: true}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyCertIncompleteChain, finding.Error}}},
		// OpenSSL refuses a Certificate message over 100 KiB by default;
		// Go accepts 256 KiB (issue 8 #10).
		{name: "STS-FETCH-5 chain larger than OpenSSL accepts", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, Padding: 110 << 10}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.PolicyCertChainTooLarge, finding.Warning}}},
		{name: "STS-FETCH-5 chain just under OpenSSL's limit", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, Padding: 98 << 10}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusEnforce, grade: finding.GradeA, not: []finding.ID{finding.PolicyCertChainTooLarge}},
		{name: "STS-FETCH-5 certificate expires soon", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, NotAfter: time.Now().Add(5 * 24 * time.Hour)}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.PolicyCertExpiring, finding.Warning}}},
		{name: "STS-FETCH-7 MISC-7 404", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(404, "text/html", "<h1>Not Found</h1>"))
		},
			status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyHTTPStatus, finding.Error}}},
		{name: "STS-HOST-1 403 bot challenge", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(403, "text/html", "<html>checking your browser</html>"))
		},
			status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyHTTPStatus, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.PolicyHTTPStatus, "bot check") }},
		{name: "STS-FETCH-7 204", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(lab.Static(204, "text/plain", "")) },
			status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyHTTPStatus, finding.Error}}},
		{name: "STS-FETCH-8 MISC-6 redirect is not followed", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Redirect(301, "https://www."+w.d+"/.well-known/mta-sts.txt"))
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyHTTPRedirect, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.PolicyHTTPRedirect, "https://www.") }},
		{name: "STS-FETCH-10 MISC-5 text/html content type", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/html", w.body(goodPolicy)))
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.PolicyContentType, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.PolicySenderDivergence, "postfix-mta-sts-resolver")
			}},
		{name: "STS-FETCH-10 no content type", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "", w.body(goodPolicy)))
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.PolicyContentType, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-FETCH-10 Text/Plain with charset is fine", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "Text/Plain; charset=UTF-8", w.body(goodPolicy)))
		}, status: check.StatusEnforce, grade: finding.GradeA, not: []finding.ID{finding.PolicyContentType, finding.PolicyCharset}},
		{name: "STS-FETCH-11 other charset", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/plain; charset=iso-8859-1", w.body(goodPolicy)))
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.PolicyCharset, finding.Warning}}},
		{name: "STS-FETCH-12 MISC-36 endless body", fixable: true, setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(lab.Endless()) },
			status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyTooLarge, finding.Error}}},
		// A body cut off by the deadline is a failed fetch, never a policy
		// with errors (issue 8 #6).
		{name: "STS-FETCH-12 slow-drip body cut off by the deadline", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Drip("version: STSv1\r\nmode: enf", 200*time.Millisecond))
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyFetchFailed, finding.Error}},
			not: []finding.ID{finding.PolicyMode, finding.PolicyMaxAge, finding.PolicyVersion, finding.PolicyMXMissing, finding.PolicyNotKeyValue, finding.PolicySenderDivergence}},
		// Content codings (issue 8 #5, RFC 9110 §8.4): each sender model
		// reads the response its own request gets, decoded as its HTTP
		// library decodes.
		{name: "STS-FETCH-12 plain body labelled Content-Encoding: gzip", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(string) (string, string) { return "gzip", "plain" }))
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyContentEncoding, finding.Error}},
			not: []finding.ID{finding.PolicyInvalidUTF8}, check: namesEverySender(finding.PolicyContentEncoding)},
		{name: "STS-FETCH-12 gzip sent although not asked for", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(string) (string, string) { return "gzip", "gzip" }))
		}, status: check.StatusEnforce, grade: finding.GradeA,
			not: []finding.ID{finding.PolicyContentEncoding, finding.PolicyInvalidUTF8, finding.PolicySenderDivergence}},
		{name: "STS-FETCH-12 gzip when asked for", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(ae string) (string, string) {
				if strings.Contains(ae, "gzip") {
					return "gzip", "gzip"
				}
				return "", "plain"
			}))
		}, status: check.StatusEnforce, grade: finding.GradeA,
			not: []finding.ID{finding.PolicyContentEncoding, finding.PolicySenderDivergence}},
		{name: "STS-FETCH-12 labelled gzip only when asked for", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(ae string) (string, string) {
				if strings.Contains(ae, "gzip") {
					return "gzip", "plain"
				}
				return "", "plain"
			}))
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.PolicyContentEncoding, finding.Error}},
			not: []finding.ID{finding.PolicySenderDivergence}, check: namesEverySender(finding.PolicyContentEncoding)},
		{name: "STS-FETCH-12 deflate for aiohttp only", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(ae string) (string, string) {
				if strings.Contains(ae, "deflate") {
					return "deflate", "deflate"
				}
				return "", "plain"
			}))
		}, status: check.StatusEnforce, grade: finding.GradeA,
			not: []finding.ID{finding.PolicyContentEncoding, finding.PolicySenderDivergence}},
		{name: "STS-FETCH-12 br that no modelled sender decodes", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy), func(string) (string, string) { return "br", "plain" }))
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyContentEncoding, finding.Error}},
			check: namesEverySender(finding.PolicyContentEncoding)},
		{name: "STS-FETCH-12 gzip bomb", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			// 16 MiB of policy lines compress to about 16 KiB; the scan
			// decodes at most 64 KiB + 1 byte of it.
			w.serve(coded(w.body(goodPolicy)+strings.Repeat("x-pad: 0\r\n", 16<<20/10), func(string) (string, string) { return "gzip", "gzip" }))
		}, status: check.StatusUnreachable, grade: finding.GradeF, want: []want{{finding.PolicyTooLarge, finding.Error}},
			not: []finding.ID{finding.PolicyContentEncoding}},
		{name: "STS-FETCH-13 MISC-35 slow policy host", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Slow(4200*time.Millisecond, lab.Static(200, "text/plain", w.body(goodPolicy))))
		}, status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.PolicySlow, finding.Warning}}},
		{name: "STS-HOST-5 MISC-37 long edge caching", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			body := w.body(goodPolicy)
			w.serve(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				rw.Header().Set("Content-Type", "text/plain")
				rw.Header().Set("Cache-Control", "public, max-age=31536000")
				rw.Write([]byte(body))
			}))
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.PolicyCaching, finding.Warning}}},
		{name: "MISC-8 HTML page with 200", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/html", "<!DOCTYPE html><html><head><title>Welcome</title></head><body>hi</body></html>"))
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyHTML, finding.Error}, {finding.PolicyContentType, finding.Error}},
			not: []finding.ID{finding.PolicyNotKeyValue}},

		// §C: the policy file, through a full scan.
		{name: "STS-POL-17 MISC-25 BOM", fixable: true, setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.policy("\ufeff" + goodPolicy) },
			status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyBOM, finding.Error}}},
		{name: "STS-POL-3 MISC-26 blank line", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\n\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyBlankLine, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-POL-2 LF endings are fine", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(strings.ReplaceAll(goodPolicy, "\r\n", "\n"))
		}, status: check.StatusEnforce, grade: finding.GradeA, not: []finding.ID{finding.PolicyLineEndings}},
		{name: "STS-POL-14 conflicting duplicate mode", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmode: enforce\nmax_age: 604800\n")
		}, status: check.StatusTesting, grade: finding.GradeD, want: []want{{finding.PolicyDuplicateKey, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-POL-5 MISC-28 Mode in the wrong case", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nMode: enforce\nmx: mx1.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyKeyCase, finding.Error}, {finding.PolicyMode, finding.Error}}},
		{name: "STS-POL-15 MISC-27 comments in the policy", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("# MTA-STS policy, see: https://example.com/help\nversion: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyNotKeyValue, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.PolicyNotKeyValue, "comments are not allowed")
			}},
		{name: "STS-POL-7 MISC-29 mode enforced", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforced\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyMode, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.PolicyMode, `write "enforce"`) }},
		{name: "STS-POL-9 MISC-30 mx with trailing dot", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s.\nmax_age: 604800\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyMXInvalid, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "STS-POL-8 MISC-18 max_age above a year", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 31557601\n")
		}, status: check.StatusInvalid, grade: finding.GradeF, want: []want{{finding.PolicyMaxAge, finding.Error}, {finding.PolicySenderDivergence, finding.Warning}}},
		{name: "MISC-17 short max_age in enforce", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 86400\n")
		}, status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.PolicyMaxAgeLow, finding.Warning}}},
		{name: "STS-POL-20 wildcard under a public suffix", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmx: *.co.uk\nmax_age: 604800\n")
		}, status: check.StatusEnforce, grade: finding.GradeC, want: []want{{finding.PolicyMXPublicSuffix, finding.Warning}, {finding.MXPatternStale, finding.Info}}},
		{name: "MISC-19 testing mode", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 86400\n")
		}, status: check.StatusTesting, grade: finding.GradeB, want: []want{{finding.PolicyTesting, finding.Info}}},
		{name: "mode none", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: none\nmax_age: 86400\n")
		}, status: check.StatusNone, grade: finding.GradeF, want: []want{{finding.PolicyModeNone, finding.Info}}, not: []finding.ID{finding.TLSRPTMissing}},

		// MX coverage (RFC 8461 §4.1).
		{name: "MISC-9 MX not covered in enforce", fixable: true, setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 30 backup.other.test.", "backup.other.test. 300 IN A 192.0.2.27")
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.MXNotCovered, finding.Error}}},
		{name: "MISC-9 MX not covered in testing", fixable: true, setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmax_age: 86400\n")
		}, status: check.StatusTesting, grade: finding.GradeB, want: []want{{finding.MXNotCovered, finding.Warning}}},
		{name: "MISC-10 wildcard at the wrong depth", fixable: true, setup: func(w world) {
			w.dns("$D. 300 IN MX 10 a.b.mail.$D.", "a.b.mail.$D. 300 IN A 192.0.2.25")
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.MXNotCovered, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.MXNotCovered, "exactly one label") }},
		{name: "STS-POL-21 stale pattern", setup: func(w world) {
			w.mail()
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy + "mx: old-mx.%[1]s\r\n")
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXPatternStale, finding.Info}}},
		{name: "MISC-38 null MX", setup: func(w world) {
			w.dns(`$D. 300 IN MX 0 .`)
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: none\nmax_age: 86400\n")
		},
			status: check.StatusNone, grade: finding.GradeF, want: []want{{finding.MXNull, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				if len(r.Fixes) != 0 {
					t.Errorf("no fixes for a domain without mail, got %+v", r.Fixes)
				}
			}},
		{name: "implicit MX", fixable: true, setup: func(w world) {
			w.dns("$D. 300 IN A 192.0.2.30")
			w.tlsrpt()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmax_age: 604800\n")
		}, status: check.StatusEnforce, grade: finding.GradeD, want: []want{{finding.MXImplicit, finding.Info}, {finding.MXNotCovered, finding.Error}}},
		{name: "MISC-39 MX target is a CNAME", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 30 alias.mail.$D.", "alias.mail.$D. 300 IN CNAME mx1.$D.")
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXCNAME, finding.Warning}}},
		{name: "MX host without address", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 30 c.mail.$D.") },
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXNoAddress, finding.Warning}}},
		{name: "MISC-34 AAAA lookup of an MX host fails while A answers", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mx1."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXAddressFamilyUndetermined, finding.Warning}},
			not: []finding.ID{finding.MXAddressUndetermined},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.MXAddressFamilyUndetermined, "AAAA lookup of mx1."+r.Domain+" failed (SERVFAIL")
			}},
		{name: "MISC-34 A lookup of an MX host times out while AAAA answers", setup: func(w world) {
			w.good()
			w.dns("b.mail.$D. 300 IN AAAA 2001:db8::26")
			w.l.DNS.Drop("b.mail."+w.d, dns.TypeA)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXAddressFamilyUndetermined, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.MXAddressFamilyUndetermined, "IPv4 addresses")
			}},
		{name: "STS-FETCH-16 MISC-34 AAAA lookup of the policy host fails while A answers", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mta-sts."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.PolicyHostFamilyUndetermined, finding.Warning}},
			not: []finding.ID{finding.PolicyHostUndetermined}},
		{name: "500 MX hosts: coverage and the fix account for every one", fixable: true, setup: func(w world) {
			w.good()
			for i := range 499 {
				w.dns(fmt.Sprintf("$D. 300 IN MX %d h%03d.pool.$D.", 30+i, i))
				if i < 20 {
					w.dns(fmt.Sprintf("h%03d.pool.$D. 300 IN A 192.0.2.%d", i, 100+i))
				}
			}
		}, status: check.StatusEnforce, grade: finding.GradeD,
			want: []want{{finding.MXNotCovered, finding.Error}, {finding.MXNotChecked, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				if len(r.MX) != 501 {
					t.Fatalf("%d MX hosts in the report, want all 501", len(r.MX))
				}
				checked, uncovered := 0, 0
				for _, m := range r.MX {
					if m.NotChecked == "" {
						checked++
					}
					if !*m.Covered {
						uncovered++
					}
				}
				if checked != scan.DefaultMaxMX || uncovered != 499 {
					t.Errorf("%d hosts checked, %d not covered; want %d and 499", checked, uncovered, scan.DefaultMaxMX)
				}
				mustMention(t, r, finding.MXNotCovered, "499 MX hosts")
				mustMention(t, r, finding.MXNotChecked, "looked at the 16 most preferred. The other 485")
				if n := countID(r, finding.MXNotCovered); n != 1 {
					t.Errorf("%d mx-not-covered findings, want one that names them all", n)
				}
				if p := fixCoversAll(t, r); p != nil && !slices.Contains(p.MX, "*.pool."+r.Domain) {
					t.Errorf("fix patterns %q: want one wildcard for the 499 hosts under pool.%s", p.MX, r.Domain)
				}
				// The report says which hosts were not looked at.
				var text, js strings.Builder
				report.WriteText(&text, r, report.TextOptions{})
				report.WriteJSON(&js, report.NewDocument(r, r.Domain))
				if !strings.Contains(text.String(), "485 more MX hosts (preference 44 to 528), not looked up: beyond the scan's limit of MX hosts (--max-mx); 485 NOT covered") {
					t.Errorf("text report lacks the summary of the hosts not looked up:\n%s", text.String())
				}
				if n := strings.Count(js.String(), `"not_checked":"mx-limit"`); n != 485 {
					t.Errorf("JSON marks %d hosts not_checked, want 485", n)
				}
			}},
		{name: "MX hosts beyond the limit under different parents are listed one by one", fixable: true, setup: func(w world) {
			w.good()
			for i := range 24 {
				w.dns(fmt.Sprintf("$D. 300 IN MX %d mx.p%02d.$D.", 30+i, i), fmt.Sprintf("mx.p%02d.$D. 300 IN A 192.0.2.%d", i, 100+i))
			}
		}, status: check.StatusEnforce, grade: finding.GradeD,
			want: []want{{finding.MXNotCovered, finding.Error}, {finding.MXNotChecked, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				p := fixCoversAll(t, r)
				if p != nil && len(p.MX) != 26 {
					t.Errorf("fix patterns %q: want the 2 kept and one per host (24)", p.MX)
				}
			}},
		{name: "RFC 7505 null MX beside other MX records", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 0 .")
		}, status: check.StatusEnforce, grade: finding.GradeC, want: []want{{finding.MXNullMixed, finding.Error}},
			not: []finding.ID{finding.MXNull}},
		{name: "RFC 6761 localhost as the best MX", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 5 localhost.")
		}, status: check.StatusEnforce, grade: finding.GradeC, want: []want{{finding.MXLocalhost, finding.Error}},
			not: []finding.ID{finding.MXNotCovered, finding.MXNoAddress},
			check: func(t *testing.T, r *check.Report) {
				if m := r.MX[0]; m.Host != "localhost" || m.NotChecked != scan.SkippedLocalhost {
					t.Errorf("MX %+v: want localhost listed first and not looked up", m)
				}
			}},
		{name: "RFC 6761 localhost as a backup MX", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 50 localhost.")
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXLocalhost, finding.Warning}}},
		{name: "MX record names an IP address", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 30 192.0.2.77.")
		}, status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXIPLiteral, finding.Warning}},
			not: []finding.ID{finding.MXNoAddress, finding.MXNotCovered}},
		{name: "MX lookup fails", setup: func(w world) { w.good(); w.l.DNS.SetRcode(w.d, dns.TypeMX, dns.RcodeServerFailure) },
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.MXUndetermined, finding.Warning}},
			not: []finding.ID{finding.MXNotCovered, finding.MXImplicit}},

		// §E1: the TLS-RPT record.
		{name: "RPT-TXT-11 MISC-20 no TLS-RPT with enforce", fixable: true, setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.policy(goodPolicy) },
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTMissing, finding.Warning}}},
		{name: "RPT-TXT-3 MISC-24 two TLS-RPT records", fixable: true, setup: func(w world) { w.good(); w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:b@$D"`) },
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTMultiple, finding.Error}}},
		{name: "RPT-TXT-4 lower-case version", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=tlsrptv1; rua=mailto:a@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTVersion, finding.Error}}},
		{name: "RPT-TXT-6 MISC-21 address without mailto:", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=tlsrpt@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTRUAInvalid, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.TLSRPTRUAInvalid, "mailto:tlsrpt@") }},
		{name: "RPT-TXT-7 MISC-21 DMARC size suffix", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D!10m"`)
		},
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTRUAInvalid, finding.Error}}},
		{name: "RPT-TXT-6 http beside mailto", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=http://r.test/x,mailto:a@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.TLSRPTRUAInvalid, finding.Warning}}},
		{name: "RPT-TXT-8 two rua fields", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D; rua=mailto:b@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.TLSRPTRUARepeated, finding.Warning}}},
		{name: "RPT-TXT-10 report address in another domain needs no authorisation", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@tlsrpt-collector.test"`)
		}, status: check.StatusEnforce, grade: finding.GradeA, check: func(t *testing.T, r *check.Report) {
			for _, f := range r.Findings {
				if f.Component == finding.ComponentTLSRPT {
					t.Errorf("unexpected TLS-RPT finding %s: %s", f.ID, f.Message)
				}
			}
		}},
		{name: "RPT-TXT-9 ruf extension", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D; ruf=mailto:b@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeA, want: []want{{finding.TLSRPTExtension, finding.Info}}},
		{name: "RPT-TXT-1 draft-era name", fixable: true, setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy)
			w.dns(`_smtp-tlsrpt.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D"`)
		},
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTDraftName, finding.Error}}, not: []finding.ID{finding.TLSRPTMissing}},
		{name: "RPT-TXT-12 TLS-RPT lookup fails", setup: func(w world) { w.good(); w.l.DNS.SetRcode("_smtp._tls."+w.d, dns.TypeTXT, dns.RcodeServerFailure) },
			status: check.StatusEnforce, grade: finding.GradeB, want: []want{{finding.TLSRPTUndetermined, finding.Warning}}, not: []finding.ID{finding.TLSRPTMissing}},
	}
}

func countID(r *check.Report, id finding.ID) int {
	n := 0
	for _, f := range r.Findings {
		if f.ID == id {
			n++
		}
	}
	return n
}

// fixCoversAll checks that the policy file among the fixes parses and
// covers every MX host of the report (RFC 8461 §4.1), and returns it.
func fixCoversAll(t *testing.T, r *check.Report) *mtasts.Policy {
	t.Helper()
	for _, f := range r.Fixes {
		if f.Kind != check.FixPolicy {
			continue
		}
		pp := mtasts.ParsePolicy([]byte(f.Content))
		if pp.Policy == nil {
			t.Fatalf("the fixed policy does not parse: %+v", pp.Problems)
		}
		for _, m := range r.MX {
			if _, ok := pp.Policy.Match(m.Host); !ok {
				t.Errorf("the fixed policy leaves %s uncovered", m.Host)
			}
		}
		if len(f.Content) > mtasts.MaxPolicySize {
			t.Errorf("fixed policy of %d bytes", len(f.Content))
		}
		return pp.Policy
	}
	t.Error("no policy fix")
	return nil
}

func dump(r *check.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s %s: %s\n", f.Severity, f.ID, f.Message)
	}
	return b.String()
}

func mustMention(t *testing.T, r *check.Report, id finding.ID, text string) {
	t.Helper()
	for _, f := range r.Findings {
		if f.ID == id && strings.Contains(f.Message, text) {
			return
		}
	}
	t.Errorf("no %s finding mentions %q:\n%s", id, text, dump(r))
}

// fixKinds lists the fixes as "policy", "note" or "dns:<action>:<first label(s)>".
func fixKinds(r *check.Report) []string {
	var out []string
	for _, f := range r.Fixes {
		switch f.Kind {
		case check.FixDNS:
			label := strings.TrimSuffix(f.Name, "."+r.Domain)
			out = append(out, "dns:"+f.Action+":"+label)
		default:
			out = append(out, f.Kind)
		}
	}
	return out
}

// TestFixesClearProblems applies the fixes of every fixable scenario to the
// lab (DNS changes, the policy file, and what the notes ask of the web
// server) and scans again: no error or warning may remain.
func TestFixesClearProblems(t *testing.T) {
	l := lab.New(t)
	for i, sc := range scenarios() {
		if !sc.fixable {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, l, i, sc)
			sc.setup(w)
			before := scanLab(t, l, w.d)
			if len(before.Fixes) == 0 {
				t.Fatalf("no fixes offered for:\n%s", dump(before))
			}
			applyFixes(t, w, before)
			after := scanLab(t, l, w.d)
			for _, f := range after.Findings {
				if f.Severity >= finding.Warning {
					t.Errorf("after the fixes: %s %s: %s", f.Severity, f.ID, f.Message)
				}
			}
			if after.Grade != finding.GradeA && after.Grade != finding.GradeB {
				t.Errorf("grade after the fixes %q (%q)", after.Grade, after.GradeReasons)
			}
			if len(after.Fixes) != 0 {
				t.Errorf("still fixes after applying them: %v", fixKinds(after))
			}
		})
	}
}

// applyFixes does what the fixes say: DNS deletions and publications, the
// policy file served as text/plain, and (for the notes) a web server with a
// good certificate at the policy host.
func applyFixes(t *testing.T, w world, r *check.Report) {
	t.Helper()
	type key struct{ name, typ string }
	current := map[key][]string{}
	record := func(name string, a *resolve.Answer) {
		if a != nil && a.Status == resolve.StatusOK && len(a.CNAMEs) == 0 {
			current[key{name, "TXT"}] = a.TXT()
		}
	}
	ev := r.Evidence
	record("_mta-sts."+w.d, ev.DNS.STS)
	record(w.d, ev.DNS.Apex)
	record("_mta_sts."+w.d, ev.DNS.STSDraft)
	record("_smtp._tls."+w.d, ev.DNS.TLSRPT)
	record("_smtp-tlsrpt."+w.d, ev.DNS.TLSRPTDraft)
	touched := map[key]bool{}
	policy, notes := "", false
	for _, f := range r.Fixes {
		switch f.Kind {
		case check.FixDNS:
			k := key{f.Name, f.Type}
			touched[k] = true
			if f.Type == "CNAME" {
				w.l.DNS.Remove(f.Name, dns.TypeCNAME)
				continue
			}
			if f.Action == "delete" {
				current[k] = slices.DeleteFunc(current[k], func(v string) bool { return v == f.Value })
			} else {
				current[k] = append(current[k], f.Value)
			}
		case check.FixPolicy:
			policy = f.Content
		case check.FixNote:
			notes = true
		}
	}
	for k := range touched {
		if k.typ != "TXT" {
			continue
		}
		w.l.DNS.Remove(k.name, dns.TypeTXT)
		for _, v := range current[k] {
			w.l.DNS.MustAdd(w.t, fmt.Sprintf("%s. 300 IN TXT %s", k.name, report.QuoteTXT(v)))
		}
	}
	if policy == "" && !notes {
		return
	}
	if policy == "" {
		for _, f := range ev.Fetches {
			if f.Status == 200 {
				policy = string(f.Body)
			}
		}
	}
	host := "mta-sts." + w.d
	h := lab.Static(200, "text/plain; charset=utf-8", policy)
	cert := w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{host}})
	if a := ev.DNS.PolicyHostA; a != nil && len(a.Addrs()) > 0 {
		w.l.HTTPS.Host(host, cert, h)
		return
	}
	w.l.MustPolicyHost(w.t, w.d, lab.PolicyHostOptions{Handler: h, Cert: cert})
}
