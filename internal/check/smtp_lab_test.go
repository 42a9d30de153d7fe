package check_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/finding"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/report"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// scanSMTP scans domain in the lab with SMTP probes.
func scanSMTP(t *testing.T, l *lab.Lab, domain string) *check.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lab.ScanBudget)
	defer cancel()
	o := labScanner(l, l.Dialer(), true).Scan(ctx, domain)
	return check.Evaluate(o, time.Now())
}

// mxWorld is a domain whose MX hosts run in the lab.
type mxWorld struct {
	world
}

// signed makes the lab resolver a validating one for everything (AD on
// the signed root, RFC 4035 §3.2.3); unsigned zones are carved out with
// unsigned().
func (w mxWorld) signed() {
	w.dns(". 300 IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 300")
	w.l.DNS.SetAD(".", true)
}

func (w mxWorld) unsigned(suffix string) { w.l.DNS.SetAD(strings.ReplaceAll(suffix, "$D", w.d), false) }

// cert issues a certificate for host (options adjusted by change).
func (w mxWorld) cert(host string, change func(*lab.LeafOptions)) tls.Certificate {
	o := lab.LeafOptions{DNSNames: []string{host}}
	if change != nil {
		change(&o)
	}
	return w.l.CA.MustIssue(w.t, o)
}

// mx publishes "pref host" and runs an SMTP server for it on a fake IPv4
// address (and ::1 when v6).
func (w mxWorld) mx(pref int, host string, o lab.SMTPOptions, v6 bool) *lab.SMTPServer {
	host = strings.ReplaceAll(host, "$D", w.d)
	addrs := []netip.Addr{w.l.NextAddr()}
	if v6 {
		addrs = append(addrs, w.l.NextAddr6())
	}
	if o.Cert.Certificate == nil && o.Certs == nil {
		o.Cert = w.cert(host, nil)
	}
	w.dns(fmt.Sprintf("$D. 300 IN MX %d %s.", pref, host))
	return w.l.MustMX(w.t, host, addrs, o)
}

// tlsa publishes _25._tcp.<host> TLSA records.
func (w mxWorld) tlsa(host string, recs ...string) {
	host = strings.ReplaceAll(host, "$D", w.d)
	for _, r := range recs {
		w.dns(fmt.Sprintf("_25._tcp.%s. 300 IN TLSA %s", host, r))
	}
}

// enforce publishes an enforce policy for the given patterns, the record
// and TLS-RPT.
func (w mxWorld) enforce(mode string, patterns ...string) {
	body := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, p := range patterns {
		body += "mx: " + strings.ReplaceAll(p, "$D", w.d) + "\r\n"
	}
	body += "max_age: 604800\r\n"
	w.sts(`"v=STSv1; id=20261101"`)
	w.tlsrpt()
	w.serve(lab.Static(200, "text/plain", body))
}

func leafOf(c tls.Certificate) *x509.Certificate { return c.Leaf }

func rec(usage, selector, mtype uint8, c *x509.Certificate) string {
	return dane.Record(usage, selector, mtype, c).String()
}

type smtpScenario struct {
	name  string
	setup func(w mxWorld)
	grade finding.Grade
	want  []want
	not   []finding.ID
	check func(t *testing.T, r *check.Report)
}

func TestSMTPAndDANEScenarios(t *testing.T) {
	now := time.Now()
	scenarios := []smtpScenario{
		{name: "A+: enforce, TLS-RPT, STARTTLS with valid certificates on every address, DANE with a rollover record", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, true)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)), rec(2, 0, 1, w.l.CA.Intermediate()))
			w.dns(`_smtp._tls.mx1.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@$D"`)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeAPlus, want: []want{{finding.DANEValid, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				m := r.MX[0]
				if len(m.Addresses) != 2 || m.Addresses[1].IP != "::1" {
					t.Fatalf("want the IPv4 and IPv6 address probed: %+v", m.Addresses)
				}
				for _, a := range m.Addresses {
					if !a.Pass || !a.CertValid || a.DANE != check.DANEAddrValid || a.TLSVersion != "TLS 1.3" || a.PolicyMatch == nil || !*a.PolicyMatch || a.ResultType != "" {
						t.Errorf("address %+v should pass", a)
					}
				}
				if m.DANE == nil || m.DANE.Status != "valid" || m.DANE.DNSSEC != check.DNSSECSecure || len(m.DANE.Records) != 2 {
					t.Errorf("DANE %+v", m.DANE)
				}
			}},
		{name: "A, not A+, without DANE when one address fails", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.mx(20, "mx2.$D", lab.SMTPOptions{Mode: lab.SMTPBanner421}, false)
			w.enforce("enforce", "*.$D")
		}, grade: finding.GradeA, want: []want{{finding.SMTPBannerRefused, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				if !slices.ContainsFunc(r.GradeReasons, func(s string) bool { return strings.Contains(s, "A+") && strings.Contains(s, "mx2.") }) {
					t.Errorf("the grade reasons should say why not A+: %q", r.GradeReasons)
				}
			}},
		{name: "MISC-14 STS-SND-8 enforce and no STARTTLS", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPNoStartTLS}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPSTARTTLSMissing, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.SMTPSTARTTLSMissing, "will not deliver")
				if a := r.MX[0].Addresses[0]; a.ResultType != tlsrpt.STARTTLSNotSupported || a.Pass {
					t.Errorf("address %+v: want result type starttls-not-supported", a)
				}
			}},
		{name: "testing and no STARTTLS is a warning", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPNoStartTLS}, false)
			w.enforce("testing", "mx1.$D")
		}, grade: finding.GradeB, want: []want{{finding.SMTPSTARTTLSMissing, finding.Warning}}},
		{name: "no policy and no STARTTLS is advice", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPNoStartTLS}, false)
		}, grade: finding.GradeF, want: []want{{finding.SMTPSTARTTLSMissing, finding.Info}}},
		{name: "MISC-14 STARTTLS refused and handshake failures", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPStartTLSRefused}, false)
			w.mx(20, "mx2.$D", lab.SMTPOptions{Mode: lab.SMTPHandshakeFails}, false)
			w.enforce("enforce", "*.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPSTARTTLSFailed, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				if got := r.MX[1].Addresses[0].ResultType; got != tlsrpt.ValidationFailure {
					t.Errorf("handshake failure result type %q, want validation-failure", got)
				}
			}},
		{name: "A+ needs every address: probes pass but the AAAA lookup fails", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.enforce("enforce", "mx1.$D")
			w.l.DNS.SetRcode("mx1."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, grade: finding.GradeA, want: []want{{finding.MXAddressFamilyUndetermined, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				if len(r.MX[0].Addresses) != 1 || !r.MX[0].Addresses[0].Pass {
					t.Errorf("the IPv4 address should be probed and pass: %+v", r.MX[0].Addresses)
				}
			}},
		{name: "more addresses than the scan probes are named, not dropped", setup: func(w mxWorld) {
			host := "mx1." + w.d
			w.dns("$D. 300 IN MX 10 mx1.$D.")
			w.l.MustMX(w.t, host, []netip.Addr{w.l.NextAddr(), w.l.NextAddr(), w.l.NextAddr(), w.l.NextAddr(), w.l.NextAddr()}, lab.SMTPOptions{Cert: w.cert(host, nil)})
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeA, want: []want{{finding.SMTPNotProbed, finding.Info}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.SMTPNotProbed, "more addresses than the scan probes")
				var passed, limited int
				for _, a := range r.MX[0].Addresses {
					switch {
					case a.Pass:
						passed++
					case a.Probe.Class == smtpprobe.NotProbedLimit:
						limited++
					}
				}
				if passed != 4 || limited != 1 {
					t.Errorf("%d addresses pass and %d are over the limit, want 4 and 1", passed, limited)
				}
			}},
		{name: "MISC-14 STARTTLS answered 220, then plain text", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPPlainAfterSTARTTLS}, false)
			w.enforce("enforce", "*.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPSTARTTLSFailed, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				mustMention(t, r, finding.SMTPSTARTTLSFailed, "plain text")
				a := r.MX[0].Addresses[0]
				// Not tls-timeout: the plain text is recognised at once.
				if a.Probe.Class != smtpprobe.TLSPlaintext || a.ResultType != tlsrpt.ValidationFailure {
					t.Errorf("class %q result type %q; want tls-plaintext, validation-failure", a.Probe.Class, a.ResultType)
				}
			}},
		{name: "MISC-14 TLS 1.0 only", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{MaxVersion: tls.VersionTLS10}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPTLSVersion, finding.Error}}},
		{name: "MISC-11 NAME-1 STS-SND-14 certificate for another name", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: w.cert("mail.other.test", nil)}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPCertNameMismatch, finding.Error}},
			check: func(t *testing.T, r *check.Report) {
				if got := r.MX[0].Addresses[0].ResultType; got != tlsrpt.CertificateHostMismatch {
					t.Errorf("result type %q", got)
				}
			}},
		{name: "NAME-5 certificate names a pattern but not the MX host (Postfix divergence)", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: w.cert("mx2."+w.d, nil)}, false)
			w.enforce("enforce", "*.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPCertNameMismatch, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.SMTPCertNameMismatch, "Postfix") }},
		{name: "MISC-13 expired certificate in testing", setup: func(w mxWorld) {
			c := w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.NotBefore, o.NotAfter = now.Add(-90*24*time.Hour), now.Add(-time.Hour) })
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.enforce("testing", "mx1.$D")
		}, grade: finding.GradeB, want: []want{{finding.SMTPCertExpired, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				if got := r.MX[0].Addresses[0].ResultType; got != tlsrpt.CertificateExpired {
					t.Errorf("result type %q", got)
				}
			}},
		{name: "certificate expiring within 14 days", setup: func(w mxWorld) {
			c := w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.NotAfter = now.Add(3 * 24 * time.Hour) })
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeAPlus, want: []want{{finding.SMTPCertExpiring, finding.Warning}}},
		{name: "STS-SND-9 chain larger than OpenSSL accepts (issue 8 #10)", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.Padding = 110 << 10 })}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeAPlus, want: []want{{finding.SMTPCertChainTooLarge, finding.Warning}}},
		{name: "MISC-13 incomplete chain and untrusted root", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.OmitIntermediate = true })}, false)
			w.mx(20, "mx2.$D", lab.SMTPOptions{Cert: w.l.Untrusted.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mx2." + w.d}})}, false)
			w.enforce("enforce", "*.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPCertIncompleteChain, finding.Error}, {finding.SMTPCertUntrusted, finding.Error}}},
		{name: "DANE-VER-12 the IPv6 address presents another certificate", setup: func(w mxWorld) {
			w.signed()
			good := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: good}, false)
			// A second server for the same host on ::1 with an expired certificate.
			expired := w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.NotBefore, o.NotAfter = now.Add(-90*24*time.Hour), now.Add(-time.Hour) })
			srv := lab.NewSMTP(w.t, lab.SMTPOptions{Name: "mx1." + w.d, Cert: expired}, w.l.CA)
			if err := w.l.MapAddr(srv.Addr(), w.l.NextAddr6(), 25); err != nil {
				w.t.Fatal(err)
			}
			w.dns("mx1.$D. 300 IN AAAA ::1")
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(good)))
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPCertExpired, finding.Error}, {finding.DANEMismatch, finding.Error}, {finding.DANENoRollover, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				for _, f := range r.Findings {
					if (f.ID == finding.DANEMismatch || f.ID == finding.SMTPCertExpired) && !strings.Contains(f.Subject, "::1") {
						t.Errorf("%s should name the IPv6 address only: %q", f.ID, f.Subject)
					}
				}
				if a := r.MX[0].Addresses; len(a) != 2 || a[0].DANE != check.DANEAddrValid || a[1].DANE != check.DANEAddrMismatch || a[1].ResultType != tlsrpt.TLSAInvalid {
					t.Errorf("addresses %+v", a)
				}
			}},
		{name: "MISC-12 STS-DANE-6 STS-DANE-2 self-signed certificate with DANE under enforce", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, func(o *lab.LeafOptions) { o.SelfSigned = true })
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.SMTPCertUntrusted, finding.Error}, {finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				if !r.MX[0].Addresses[0].Pass {
					t.Error("DANE-valid address should pass for DANE senders")
				}
			}},
		{name: "DANE-VER-3 expired self-signed certificate is fine for DANE-only", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, func(o *lab.LeafOptions) {
				o.SelfSigned = true
				o.NotBefore, o.NotAfter = now.Add(-90*24*time.Hour), now.Add(-time.Hour)
			})
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEValid, finding.Info}, {finding.SMTPCertExpired, finding.Info}, {finding.DANENoRollover, finding.Warning}}},
		{name: "MISC-40 MISC-50 STS-DANE-1 TLSA does not match a renewed key", setup: func(w mxWorld) {
			w.signed()
			old := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(old)))
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.DANEMismatch, finding.Error}, {finding.DANENoRollover, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				var tlsa []string
				for _, f := range r.Fixes {
					if f.Type == "TLSA" {
						tlsa = append(tlsa, f.Value)
					}
				}
				if len(tlsa) != 2 || !strings.HasPrefix(tlsa[0], "3 1 1 ") || !strings.HasPrefix(tlsa[1], "2 0 1 ") {
					t.Errorf("want a 3 1 1 and a 2 0 1 fix, got %q", tlsa)
				}
			}},
		{name: "MISC-41 DANE-TA for a root the server does not send", setup: func(w mxWorld) {
			w.signed()
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.tlsa("mx1.$D", rec(2, 0, 1, w.l.CA.Root()))
		}, grade: finding.GradeF, want: []want{{finding.DANETAInvalid, finding.Error}, {finding.DANENoRollover, finding.Warning}}},
		{name: "DANE-VER-4 DANE-TA of the intermediate", setup: func(w mxWorld) {
			w.signed()
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.tlsa("mx1.$D", rec(2, 0, 1, w.l.CA.Intermediate()))
			// No TLS-RPT record at _smtp._tls.mx1, where DANE reporters
			// send (RPT-TXT-1, AMB-10).
		}, grade: finding.GradeF, want: []want{{finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}, {finding.DANEHostTLSRPT, finding.Info}}},
		{name: "MISC-44 only PKIX usages", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(1, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEUnusable, finding.Error}}},
		{name: "MISC-45 malformed TLSA", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", "3 1 1 "+strings.Repeat("ab", 31), rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEMalformed, finding.Error}, {finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}}},
		{name: "MISC-49 DANE-DNS-13 TLSA in an unsigned zone", setup: func(w mxWorld) {
			w.signed()
			w.unsigned("$D")
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANETLSAInsecure, finding.Warning}}, not: []finding.ID{finding.DANEValid}},
		{name: "DANE-DNS-5 addresses unsigned, TLSA signed", setup: func(w mxWorld) {
			w.signed()
			w.unsigned("mx1.$D")
			w.l.DNS.SetAD("_25._tcp.mx1."+w.d, true)
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEAddressInsecure, finding.Warning}}},
		{name: "DANE-DNS-4 MX RRset unsigned, MX host signed", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx.provider-"+w.d, nil)
			w.l.DNS.MustAdd(w.t, "mx.provider-"+w.d+". 300 IN A 127.0.0.1")
			addr := w.l.NextAddr()
			w.l.DNS.RemoveName("mx.provider-" + w.d)
			w.l.MustMX(w.t, "mx.provider-"+w.d, []netip.Addr{addr}, lab.SMTPOptions{Cert: c})
			w.dns("$D. 300 IN MX 10 mx.provider-$D.")
			w.tlsa("mx.provider-$D", rec(3, 1, 1, leafOf(c)))
			w.unsigned("$D") // the domain's own zone
		}, grade: finding.GradeF, want: []want{{finding.DANEMXInsecure, finding.Warning}, {finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}}},
		{name: "MISC-42 STS-DANE-3 DANE-DNS-2 DANE-DNS-3 TLSA lookup SERVFAIL from a validating resolver", setup: func(w mxWorld) {
			w.signed()
			w.mx(10, "mx1.$D", lab.SMTPOptions{}, false)
			w.l.DNS.SetRcode("_25._tcp.mx1."+w.d, dns.TypeTLSA, dns.RcodeServerFailure)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.DANELookupFailed, finding.Error}}},
		{name: "DANE-DNS-9 MISC-43 _tcp NXDOMAIN", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
			w.l.DNS.SetRcode("_tcp.mx1."+w.d, dns.TypeANY, dns.RcodeNameError)
		}, grade: finding.GradeF, want: []want{{finding.DANETCPNXDomain, finding.Error}, {finding.DANENoRollover, finding.Warning}}},
		{name: "MISC-46 DANE on one MX only", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.mx(20, "mx2.$D", lab.SMTPOptions{}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEPartial, finding.Warning}, {finding.DANEAbsent, finding.Info}, {finding.DANENoRollover, finding.Warning}}},
		{name: "MISC-48 DANE-REC-7 DANE-VER-6 DANE and no STARTTLS", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPNoStartTLS, Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.SMTPSTARTTLSMissing, finding.Error}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.SMTPSTARTTLSMissing, "DANE senders") }},
		{name: "DANE-DNS-1 resolver that does not validate", setup: func(w mxWorld) {
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx1.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEDNSSECUnknown, finding.Info}}, not: []finding.ID{finding.DANETLSAInsecure, finding.DANEValid}},
		{name: "DANE-DNS-6 MX host is an alias; TLSA at the expanded name", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("alias.mail."+w.d, func(o *lab.LeafOptions) { o.DNSNames = []string{"alias.mail." + w.d, "real.mail." + w.d} })
			addr := w.l.NextAddr()
			w.l.MustMX(w.t, "real.mail."+w.d, []netip.Addr{addr}, lab.SMTPOptions{Cert: c})
			w.dns("$D. 300 IN MX 10 alias.mail.$D.", "alias.mail.$D. 300 IN CNAME real.mail.$D.")
			w.tlsa("real.mail.$D", rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEValid, finding.Info}, {finding.MXCNAME, finding.Warning}, {finding.DANENoRollover, finding.Warning}}},
		{name: "STS-DANE-5 a DANE-valid MX outside the policy patterns is still an error", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx.other-"+w.d, nil)
			w.mx(10, "mx.other-$D", lab.SMTPOptions{Cert: c}, false)
			w.tlsa("mx.other-$D", rec(3, 1, 1, leafOf(c)))
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeD, want: []want{{finding.MXNotCovered, finding.Error}, {finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}}},
		{name: "DANE-DNS-8 TLSA owner is a CNAME to a shared RRset", setup: func(w mxWorld) {
			w.signed()
			c := w.cert("mx1."+w.d, nil)
			w.mx(10, "mx1.$D", lab.SMTPOptions{Cert: c}, false)
			w.dns("_25._tcp.mx1.$D. 300 IN CNAME tlsa1._dane.$D.", "tlsa1._dane.$D. 300 IN TLSA "+rec(3, 1, 1, leafOf(c)))
		}, grade: finding.GradeF, want: []want{{finding.DANEValid, finding.Info}, {finding.DANENoRollover, finding.Warning}},
			check: func(t *testing.T, r *check.Report) {
				if o := r.MX[0].DANE.Owner; o != "_25._tcp.mx1."+"example.test" {
					t.Errorf("the TLSA base domain stays the MX host, got owner %q", o)
				}
			}},
		{name: "banner 421 is not proof of a fault", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPBanner421}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeA, want: []want{{finding.SMTPBannerRefused, finding.Warning}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.SMTPBannerRefused, "not proof") }},
		{name: "stall after the banner", setup: func(w mxWorld) {
			w.mx(10, "mx1.$D", lab.SMTPOptions{Mode: lab.SMTPStallAfterBanner}, false)
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeA, want: []want{{finding.SMTPNoBanner, finding.Warning}}},
		{name: "unreachable everywhere points at the scanner's network", setup: func(w mxWorld) {
			addr := w.l.MustRefusedAddr(w.t, 25) // a lab port that refuses
			w.dns("$D. 300 IN MX 10 mx1.$D.", "mx1.$D. 300 IN A "+addr.String())
			w.enforce("enforce", "mx1.$D")
		}, grade: finding.GradeA, want: []want{{finding.SMTPUnreachable, finding.Warning}},
			check: func(t *testing.T, r *check.Report) { mustMention(t, r, finding.SMTPUnreachable, "port 25") }},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			l := lab.New(t)
			w := mxWorld{world{t: t, l: l, d: "example.test"}}
			sc.setup(w)
			r := scanSMTP(t, l, w.d)
			if r.Grade != sc.grade {
				t.Errorf("grade %q, want %q; reasons %q\n%s", r.Grade, sc.grade, r.GradeReasons, dump(r))
			}
			checkFindings(t, r, sc.want, sc.not)
			for _, f := range r.Findings {
				if f.Message == "" || f.Severity >= finding.Warning && (f.Fix == "" || strings.Contains(f.Fix, "<mx>")) {
					t.Errorf("incomplete finding %+v", f)
				}
			}
			if sc.check != nil {
				sc.check(t, r)
			}
		})
	}
}

// TestOneConnectionPerAddress: two MX hosts on the same address are probed
// one after the other, never at once.
func TestOneConnectionPerAddress(t *testing.T) {
	l := lab.New(t)
	addr := l.NextAddr()
	srv := l.MustMX(t, "mx1.shared.test", []netip.Addr{addr}, lab.SMTPOptions{})
	l.DNS.MustAdd(t, "shared.test. 300 IN MX 10 mx1.shared.test.", "shared.test. 300 IN MX 20 mx2.shared.test.", "mx2.shared.test. 300 IN A "+addr.String())
	r := scanSMTP(t, l, "shared.test")
	if n := len(r.MX[0].Addresses) + len(r.MX[1].Addresses); n != 2 {
		t.Fatalf("%d probes, want 2", n)
	}
	if got := srv.MaxConcurrent(); got != 1 {
		t.Errorf("%d simultaneous connections to one address, want 1", got)
	}
}

// TestProbeBudget: when the time budget ends while probes wait for their
// turn, those addresses are reported as not probed, with no finding that
// blames their servers, and the probes that did run went to every MX host
// before any host got a second (issue: probes that never ran are not
// "unreachable").
func TestProbeBudget(t *testing.T) {
	l := lab.New(t)
	w := mxWorld{world{t: t, l: l, d: "budget.test"}}
	for i := 1; i <= 3; i++ {
		host := fmt.Sprintf("mx%d.$D", i)
		w.dns(fmt.Sprintf("$D. 300 IN MX %d %s.", 10*i, host))
		l.MustMX(t, strings.ReplaceAll(host, "$D", w.d), []netip.Addr{l.NextAddr(), l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPNoBanner})
	}
	w.enforce("enforce", "*.$D")
	// Each probe waits 1.5 s for a banner that never comes, one at a
	// time: the budget ends while some still wait for their turn.
	s := labScanner(l, l.Dialer(), true)
	s.MaxProbes = 1
	s.Prober.(*smtpprobe.Prober).BannerTimeout = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	r := check.Evaluate(s.Scan(ctx, w.d), time.Now())

	observed := map[string]int{}
	addrs := 0
	for _, m := range r.MX {
		for _, a := range m.Addresses {
			addrs++
			if a.Probe.Class.Observed() {
				observed[m.Host]++
			} else if a.Pass || a.ResultType != "" {
				t.Errorf("%s %s was not probed but is judged: %+v", m.Host, a.IP, a)
			}
		}
	}
	if addrs != 6 {
		t.Errorf("%d addresses in the report, want all 6 (probed or not)", addrs)
	}
	if len(observed) == 0 {
		t.Fatalf("no probe ran:\n%s", dump(r))
	}
	for _, m := range r.MX {
		if observed[m.Host] == 0 {
			for h, n := range observed {
				if n > 1 {
					t.Errorf("%s got %d probes while %s got none: %v", h, n, m.Host, observed)
				}
			}
		}
	}
	if slices.ContainsFunc(r.Findings, func(f finding.Finding) bool { return f.ID == finding.SMTPUnreachable }) {
		t.Errorf("a probe that never ran is reported as unreachable:\n%s", dump(r))
	}
	for _, f := range r.Findings {
		if f.Component == finding.ComponentSMTP && f.ID != finding.SMTPNotProbed {
			for _, m := range r.MX {
				if observed[m.Host] == 0 && strings.Contains(f.Subject, m.Host) {
					t.Errorf("finding %s about %s, which was never probed", f.ID, m.Host)
				}
			}
		}
	}
	mustMention(t, r, finding.SMTPNotProbed, "time budget ran out")
	var text strings.Builder
	report.WriteText(&text, r, report.TextOptions{})
	if !strings.Contains(text.String(), "not probed (time budget)") {
		t.Errorf("the text report does not say what was not probed:\n%s", text.String())
	}
}
