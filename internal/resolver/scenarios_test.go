package resolver_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// The scenarios of the scan suite (internal/check: TestScenarios and
// TestSMTPAndDANEScenarios), resolved: each is set up here with the same
// DNS records and policy-host behaviour under the same name (the SMTP
// servers are left out: a resolver never connects to MX hosts, Postfix
// does), with the reply Postfix must get. TestScenarioNamesCovered fails
// when the scan suite gains a scenario that has no expected reply here.

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.%[1]s\r\nmx: *.mail.%[1]s\r\nmax_age: 604800\r\n"

// coded serves body as text/plain with the Content-Encoding that choose
// picks for the request's Accept-Encoding header, the body compressed as
// "gzip" or "deflate", or sent as it is ("plain") whatever the label says.
func coded(body string, choose func(acceptEncoding string) (contentEncoding, payload string)) http.Handler {
	var gz, zl bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, body)
	zw.Close()
	fw := zlib.NewWriter(&zl)
	io.WriteString(fw, body)
	fw.Close()
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ce, payload := choose(r.Header.Get("Accept-Encoding"))
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ce != "" {
			rw.Header().Set("Content-Encoding", ce)
		}
		switch payload {
		case "gzip":
			rw.Write(gz.Bytes())
		case "deflate":
			rw.Write(zl.Bytes())
		default:
			io.WriteString(rw, body)
		}
	})
}

func codedPolicy(choose func(string) (string, string)) func(w world) {
	return func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(coded(w.body(goodPolicy), choose)) }
}

// world is one scenario's domain in a lab.
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

func (w world) mail() {
	w.dns("$D. 300 IN MX 10 mx1.$D.", "$D. 300 IN MX 20 b.mail.$D.", "mx1.$D. 300 IN A 192.0.2.25", "b.mail.$D. 300 IN A 192.0.2.26")
}

func (w world) sts(txt ...string) {
	for _, t := range txt {
		w.dns(`_mta-sts.$D. 300 IN TXT ` + t)
	}
}

func (w world) tlsrpt()                 { w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@$D"`) }
func (w world) body(tmpl string) string { return strings.ReplaceAll(tmpl, "%[1]s", w.d) }
func (w world) policy(body string) {
	w.serve(lab.Static(200, "text/plain; charset=utf-8", w.body(body)))
}
func (w world) serve(h http.Handler) { w.l.MustPolicyHost(w.t, w.d, lab.PolicyHostOptions{Handler: h}) }
func (w world) serveWith(cert tls.Certificate, h http.Handler, o lab.HostOptions) {
	w.l.MustPolicyHost(w.t, w.d, lab.PolicyHostOptions{Handler: h, Cert: cert, TLS: o})
}
func (w world) good() { w.mail(); w.sts(`"v=STSv1; id=20261101"`); w.tlsrpt(); w.policy(goodPolicy) }

// signed makes the lab resolver validate (AD on the signed root).
func (w world) signed() {
	w.dns(". 300 IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 300")
	w.l.DNS.SetAD(".", true)
}

func (w world) unsigned(suffix string) { w.l.DNS.SetAD(strings.ReplaceAll(suffix, "$D", w.d), false) }

// mx publishes an MX host with an address.
func (w world) mx(pref int, host string) {
	w.dns(fmt.Sprintf("$D. 300 IN MX %d %s.", pref, host), host+". 300 IN A 192.0.2.25")
}

// tlsa publishes _25._tcp.<host> records; "usable" stands for a 3 1 1
// record of a lab certificate.
func (w world) tlsa(host string, recs ...string) {
	for _, r := range recs {
		if r == "usable" {
			c := w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{strings.ReplaceAll(host, "$D", w.d)}})
			r = dane.Record(3, 1, 1, c.Leaf).String()
		}
		w.dns(fmt.Sprintf("_25._tcp.%s. 300 IN TLSA %s", host, r))
	}
}

// enforce publishes a policy of mode for the patterns, the record and
// TLS-RPT.
func (w world) enforce(mode string, patterns ...string) {
	body := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, p := range patterns {
		body += "mx: " + strings.ReplaceAll(p, "$D", w.d) + "\r\n"
	}
	body += "max_age: 604800\r\n"
	w.sts(`"v=STSv1; id=20261101"`)
	w.tlsrpt()
	w.serve(lab.Static(200, "text/plain", body))
}

// Expected replies; "$D" stands for the domain.
const (
	nf       = "NOTFOUND "
	temp     = "TEMP"
	daneOnly = "OK dane-only"
	daneOpp  = "OK dane"
)

// secure is the reply for a policy with these patterns (Postfix syntax).
func secure(match ...string) string {
	if len(match) == 0 {
		match = []string{"mx1.$D", ".mail.$D"}
	}
	return "OK secure match=" + strings.Join(match, ":") + " servername=hostname"
}

type scenario struct {
	name  string
	setup func(w world)
	want  string // the reply with require_sni (the default zone)
	rule  sendpolicy.Rule
	own   bool // needs a lab of its own (it signs the root)
}

func scenarios() []scenario {
	sec := secure()
	tlsrptVariant := func(lines ...string) func(w world) {
		return func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.policy(goodPolicy); w.dns(lines...) }
	}
	return []scenario{
		{name: "good enforce policy", setup: func(w world) { w.good() }, want: sec, rule: sendpolicy.RuleSTSEnforce},
		{name: "no MTA-STS at all", setup: func(w world) { w.mail() }, want: nf, rule: sendpolicy.RuleNoPolicy},
		{name: "STS-TXT-1 record at the apex", setup: func(w world) { w.mail(); w.dns(`$D. 300 IN TXT "v=STSv1; id=1"`); w.policy(goodPolicy) }, want: nf},
		{name: "STS-TXT-2 multi-string record", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=2024" "0101"`); w.policy(goodPolicy) }, want: sec},
		{name: "STS-TXT-3 MISC-23 unrelated TXT beside the record", setup: func(w world) { w.good(); w.sts(`"google-site-verification=abc"`) }, want: sec},
		{name: "STS-TXT-4 MISC-22 two records", setup: func(w world) { w.good(); w.sts(`"v=STSv1; id=2"`) }, want: nf},
		{name: "STS-TXT-5 no id", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1;"`) }, want: nf},
		{name: "STS-TXT-6 MISC-31 literal quotes", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"\"v=STSv1; id=1\""`) }, want: nf},
		{name: "STS-TXT-6 wrong case", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"V=STSv1; id=1"`) }, want: nf},
		{name: "STS-TXT-7 space before semicolon, single record", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1 ; id=1"`) }, want: sec},
		{name: "STS-TXT-7 space before semicolon beside another TXT record", setup: func(w world) {
			w.mail()
			w.policy(goodPolicy)
			w.sts(`"v=STSv1 ; id=1"`, `"google-site-verification=abc"`)
		}, want: nf},
		{name: "RPT-TXT-4 space before semicolon, single TLS-RPT record", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1 ; rua=mailto:tlsrpt@$D"`), want: sec},
		{name: "RPT-TXT-3 space before semicolon beside another TXT record", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1 ; rua=mailto:tlsrpt@$D"`, `_smtp._tls.$D. 300 IN TXT "other"`), want: sec},
		{name: "STS-TXT-8 space around equals", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1; id = 1"`) }, want: nf},
		{name: "STS-TXT-9 MISC-16 hyphenated id", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=2024-01-01"`) }, want: nf},
		{name: "STS-TXT-10 duplicate id", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1; id=2"`) }, want: sec},
		{name: "STS-TXT-12 extension field", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1; foo=bar"`) }, want: sec},
		{name: "STS-TXT-13 non-breaking space", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1;\194\160id=1"`) }, want: nf},
		{name: "STS-TXT-14 trailing space", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.sts(`"v=STSv1; id=1 "`) }, want: nf},
		{name: "STS-TXT-15 delegated by CNAME", setup: func(w world) {
			w.mail()
			w.policy(goodPolicy)
			w.dns(`_mta-sts.$D. 300 IN CNAME _mta-sts.provider-$D.`, `_mta-sts.provider-$D. 300 IN TXT "v=STSv1; id=9"`)
		}, want: sec},
		{name: "STS-TXT-15 dangling CNAME", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.dns(`_mta-sts.$D. 300 IN CNAME _mta-sts.gone-$D.`) }, want: nf},
		// STS-SND-16: nothing cached, the lookup failed: deliver as without
		// MTA-STS (the default zone; defer_on_sts_failure answers TEMP).
		{name: "STS-TXT-16 SERVFAIL is not absence", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("_mta-sts."+w.d, dns.TypeTXT, dns.RcodeServerFailure)
		}, want: nf, rule: sendpolicy.RuleSTSTempOpen},
		{name: "STS-TXT-16 timeout is not absence", setup: func(w world) { w.good(); w.l.DNS.Drop("_mta-sts."+w.d, dns.TypeTXT) }, want: nf, rule: sendpolicy.RuleSTSTempOpen},
		{name: "STS-TXT-16 truncated over UDP and TCP is not absence", setup: func(w world) {
			w.good()
			w.l.DNS.TruncateAlways("_mta-sts."+w.d, dns.TypeTXT)
		}, want: nf, rule: sendpolicy.RuleSTSTempOpen},
		{name: "truncated MX answer is not an implicit MX", setup: func(w world) { w.good(); w.l.DNS.TruncateAlways(w.d, dns.TypeMX) }, want: sec},
		{name: "STS-TXT-17 MISC-2 policy online without a record", setup: func(w world) { w.mail(); w.policy(goodPolicy) }, want: nf},
		{name: "STS-TXT-18 zone wildcard answers _mta-sts", setup: func(w world) { w.mail(); w.dns(`*.$D. 300 IN TXT "v=spf1 -all"`) }, want: nf},
		{name: "STS-TXT-19 MISC-33 subdomain does not inherit", setup: func(w world) { w.mail() }, want: nf},
		{name: "STS-TXT-21 long TTL", setup: func(w world) { w.mail(); w.policy(goodPolicy); w.dns(`_mta-sts.$D. 86400 IN TXT "v=STSv1; id=1"`) }, want: sec},
		{name: "MISC-32 draft-era record name", setup: func(w world) { w.mail(); w.dns(`_mta_sts.$D. 300 IN TXT "v=STSv1; id=1"`); w.policy(goodPolicy) }, want: nf},

		// §B: the policy host and the fetch (RFC 8461 §3.3: any failure
		// with nothing cached means no policy).
		{name: "STS-FETCH-16 MISC-1 policy host does not resolve", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`) }, want: nf},
		{name: "STS-FETCH-16 policy host lookup fails", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mta-sts."+w.d, dns.TypeANY, dns.RcodeServerFailure)
		}, want: nf},
		{name: "STS-FETCH-16 MISC-34 only one of two addresses works", setup: func(w world) { w.good(); w.dns("mta-sts.$D. 300 IN A " + w.l.MustRefusedAddr(w.t, 443).String()) }, want: sec},
		{name: "STS-FETCH-2 MISC-1 connection refused", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.dns("mta-sts.$D. 300 IN A " + w.l.MustRefusedAddr(w.t, 443).String())
		}, want: nf},
		{name: "STS-FETCH-3 TLS 1.1 only", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(tls.Certificate{}, lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		}, want: nf},
		{name: "STS-FETCH-3 no TLS version in common (protocol_version alert)", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			alert := lab.NewReply(w.t, []byte{21, 3, 3, 0, 2, 2, 70}) // fatal protocol_version (RFC 8446 §6)
			addr := w.l.NextAddr()
			if err := w.l.MapAddr(alert.Addr(), addr, 443); err != nil {
				w.t.Fatal(err)
			}
			w.dns("mta-sts.$D. 300 IN A " + addr.String())
		}, want: nf},
		{name: "STS-FETCH-6 MISC-3 certificate for the wrong name", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts.provider.test"}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		{name: "NAME-2 CN-only certificate", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{CommonName: "mta-sts." + w.d}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		{name: "STS-FETCH-6 wildcard certificate", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"*." + w.d}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: sec},
		{name: "STS-FETCH-5 self-signed", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, SelfSigned: true}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		{name: "STS-FETCH-5 MISC-4 untrusted CA", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.Untrusted.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		{name: "STS-FETCH-5 MISC-4 expired", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			c := w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, NotBefore: time.Now().Add(-90 * 24 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			w.serveWith(c, lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		{name: "STS-FETCH-5 MISC-4 incomplete chain", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, OmitIntermediate: true}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: nf},
		// Go's TLS accepts a certificate message up to 256 KiB, so the
		// resolver reads a policy OpenSSL-based senders cannot fetch (the
		// scan warns about it).
		{name: "STS-FETCH-5 chain larger than OpenSSL accepts", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, Padding: 110 << 10}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: sec},
		{name: "STS-FETCH-5 chain just under OpenSSL's limit", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, Padding: 98 << 10}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: sec},
		{name: "STS-FETCH-5 certificate expires soon", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serveWith(w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mta-sts." + w.d}, NotAfter: time.Now().Add(5 * 24 * time.Hour)}), lab.Static(200, "text/plain", w.body(goodPolicy)), lab.HostOptions{})
		}, want: sec},
		{name: "STS-FETCH-7 MISC-7 404", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(404, "text/html", "<h1>Not Found</h1>"))
		}, want: nf},
		{name: "STS-HOST-1 403 bot challenge", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(403, "text/html", "<html>checking your browser</html>"))
		}, want: nf},
		{name: "STS-FETCH-7 204", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(lab.Static(204, "text/plain", "")) }, want: nf},
		{name: "STS-FETCH-8 MISC-6 redirect is not followed", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Redirect(301, "https://www."+w.d+"/.well-known/mta-sts.txt"))
		}, want: nf},
		// RFC 8461 §3.2: senders SHOULD check the media type; mailtls does,
		// like postfix-mta-sts-resolver.
		{name: "STS-FETCH-10 MISC-5 text/html content type", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/html", w.body(goodPolicy)))
		}, want: nf},
		{name: "STS-FETCH-10 no content type", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(lab.Static(200, "", w.body(goodPolicy))) }, want: nf},
		{name: "STS-FETCH-10 Text/Plain with charset is fine", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "Text/Plain; charset=UTF-8", w.body(goodPolicy)))
		}, want: sec},
		{name: "STS-FETCH-11 other charset", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/plain; charset=iso-8859-1", w.body(goodPolicy)))
		}, want: sec},
		{name: "STS-FETCH-12 MISC-36 endless body", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.serve(lab.Endless()) }, want: nf},
		{name: "STS-FETCH-12 slow-drip body cut off by the deadline", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Drip("version: STSv1\r\nmode: enf", 200*time.Millisecond))
		}, want: nf},
		// Content codings (RFC 9110 §8.4): the resolver asks for none and
		// decodes gzip and deflate when a server sends them anyway.
		{name: "STS-FETCH-12 plain body labelled Content-Encoding: gzip", setup: codedPolicy(func(string) (string, string) { return "gzip", "plain" }), want: nf},
		{name: "STS-FETCH-12 gzip sent although not asked for", setup: codedPolicy(func(string) (string, string) { return "gzip", "gzip" }), want: sec},
		{name: "STS-FETCH-12 gzip when asked for", setup: codedPolicy(func(ae string) (string, string) {
			if strings.Contains(ae, "gzip") {
				return "gzip", "gzip"
			}
			return "", "plain"
		}), want: sec},
		{name: "STS-FETCH-12 labelled gzip only when asked for", setup: codedPolicy(func(ae string) (string, string) {
			if strings.Contains(ae, "gzip") {
				return "gzip", "plain"
			}
			return "", "plain"
		}), want: sec},
		{name: "STS-FETCH-12 deflate for aiohttp only", setup: codedPolicy(func(ae string) (string, string) {
			if strings.Contains(ae, "deflate") {
				return "deflate", "deflate"
			}
			return "", "plain"
		}), want: sec},
		{name: "STS-FETCH-12 br that no modelled sender decodes", setup: codedPolicy(func(string) (string, string) { return "br", "plain" }), want: nf},
		{name: "STS-FETCH-12 gzip bomb", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(coded(w.body(goodPolicy)+strings.Repeat("x-pad: 0\r\n", 16<<20/10), func(string) (string, string) { return "gzip", "gzip" }))
		}, want: nf},
		{name: "STS-FETCH-13 MISC-35 slow policy host", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Slow(4200*time.Millisecond, lab.Static(200, "text/plain", w.body(goodPolicy))))
		}, want: sec},
		{name: "STS-HOST-5 MISC-37 long edge caching", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			body := w.body(goodPolicy)
			w.serve(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				rw.Header().Set("Content-Type", "text/plain")
				rw.Header().Set("Cache-Control", "public, max-age=31536000")
				rw.Write([]byte(body))
			}))
		}, want: sec},
		{name: "MISC-8 HTML page with 200", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.serve(lab.Static(200, "text/html", "<!DOCTYPE html><html><head><title>Welcome</title></head><body>hi</body></html>"))
		}, want: nf},

		// §C: the policy file (RFC 8461 §3.2; STS-POL-19: an invalid policy
		// is a failed fetch).
		{name: "STS-POL-17 MISC-25 BOM", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.policy("\ufeff" + goodPolicy) }, want: nf},
		{name: "STS-POL-3 MISC-26 blank line", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\n\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, want: nf},
		{name: "STS-POL-2 LF endings are fine", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(strings.ReplaceAll(goodPolicy, "\r\n", "\n"))
		}, want: sec},
		// RFC 8461 §3.2: the first of a duplicate field counts: testing.
		{name: "STS-POL-14 conflicting duplicate mode", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmode: enforce\nmax_age: 604800\n")
		}, want: nf, rule: sendpolicy.RuleSTSTesting},
		{name: "STS-POL-5 MISC-28 Mode in the wrong case", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nMode: enforce\nmx: mx1.%[1]s\nmax_age: 604800\n")
		}, want: nf},
		{name: "STS-POL-15 MISC-27 comments in the policy", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("# MTA-STS policy, see: https://example.com/help\nversion: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, want: nf},
		{name: "STS-POL-7 MISC-29 mode enforced", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforced\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, want: nf},
		{name: "STS-POL-9 MISC-30 mx with trailing dot", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s.\nmax_age: 604800\n")
		}, want: nf},
		{name: "STS-POL-8 MISC-18 max_age above a year", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 31557601\n")
		}, want: nf},
		{name: "MISC-17 short max_age in enforce", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 86400\n")
		}, want: sec},
		{name: "STS-POL-20 wildcard under a public suffix", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmx: *.co.uk\nmax_age: 604800\n")
		}, want: secure("mx1.$D", ".mail.$D", ".co.uk")},
		{name: "MISC-19 testing mode", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmx: *.mail.%[1]s\nmax_age: 86400\n")
		}, want: nf, rule: sendpolicy.RuleSTSTesting},
		{name: "mode none", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: none\nmax_age: 86400\n")
		}, want: nf, rule: sendpolicy.RuleSTSNone},

		// MX coverage is Postfix's to check at delivery (match=, and with
		// the TLSRPT attributes smtp_tls_enforce_sts_mx_patterns).
		{name: "MISC-9 MX not covered in enforce", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 30 backup.other.test.", "backup.other.test. 300 IN A 192.0.2.27")
		}, want: sec},
		{name: "MISC-9 MX not covered in testing", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: testing\nmx: mx1.%[1]s\nmax_age: 86400\n")
		}, want: nf},
		{name: "MISC-10 wildcard at the wrong depth", setup: func(w world) {
			w.dns("$D. 300 IN MX 10 a.b.mail.$D.", "a.b.mail.$D. 300 IN A 192.0.2.25")
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: *.mail.%[1]s\nmax_age: 604800\n")
		}, want: secure(".mail.$D")},
		{name: "STS-POL-21 stale pattern", setup: func(w world) {
			w.mail()
			w.sts(`"v=STSv1; id=1"`)
			w.policy(goodPolicy + "mx: old-mx.%[1]s\r\n")
		}, want: secure("mx1.$D", ".mail.$D", "old-mx.$D")},
		{name: "MISC-38 null MX", setup: func(w world) {
			w.dns(`$D. 300 IN MX 0 .`)
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: none\nmax_age: 86400\n")
		}, want: nf},
		{name: "implicit MX", setup: func(w world) {
			w.dns("$D. 300 IN A 192.0.2.30")
			w.sts(`"v=STSv1; id=1"`)
			w.policy("version: STSv1\nmode: enforce\nmx: mx1.%[1]s\nmax_age: 604800\n")
		}, want: secure("mx1.$D")},
		{name: "MISC-39 MX target is a CNAME", setup: func(w world) {
			w.good()
			w.dns("$D. 300 IN MX 30 alias.mail.$D.", "alias.mail.$D. 300 IN CNAME mx1.$D.")
		}, want: sec},
		{name: "MX host without address", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 30 c.mail.$D.") }, want: sec},
		{name: "MISC-34 AAAA lookup of an MX host fails while A answers", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mx1."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, want: sec},
		{name: "MISC-34 A lookup of an MX host times out while AAAA answers", setup: func(w world) {
			w.good()
			w.dns("b.mail.$D. 300 IN AAAA 2001:db8::26")
			w.l.DNS.Drop("b.mail."+w.d, dns.TypeA)
		}, want: sec},
		{name: "STS-FETCH-16 MISC-34 AAAA lookup of the policy host fails while A answers", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("mta-sts."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, want: sec},
		{name: "500 MX hosts: coverage and the fix account for every one", setup: func(w world) {
			w.good()
			for i := range 499 {
				w.dns(fmt.Sprintf("$D. 300 IN MX %d h%03d.pool.$D.", 30+i, i))
				if i < 20 {
					w.dns(fmt.Sprintf("h%03d.pool.$D. 300 IN A 192.0.2.%d", i, 100+i))
				}
			}
		}, want: sec},
		{name: "MX hosts beyond the limit under different parents are listed one by one", setup: func(w world) {
			w.good()
			for i := range 24 {
				w.dns(fmt.Sprintf("$D. 300 IN MX %d mx.p%02d.$D.", 30+i, i), fmt.Sprintf("mx.p%02d.$D. 300 IN A 192.0.2.%d", i, 100+i))
			}
		}, want: sec},
		{name: "RFC 7505 null MX beside other MX records", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 0 .") }, want: sec},
		{name: "RFC 6761 localhost as the best MX", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 5 localhost.") }, want: sec},
		{name: "RFC 6761 localhost as a backup MX", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 50 localhost.") }, want: sec},
		{name: "MX record names an IP address", setup: func(w world) { w.good(); w.dns("$D. 300 IN MX 30 192.0.2.77.") }, want: sec},
		{name: "MX lookup fails", setup: func(w world) { w.good(); w.l.DNS.SetRcode(w.d, dns.TypeMX, dns.RcodeServerFailure) }, want: sec},

		// TLS-RPT records do not change the policy.
		{name: "RPT-TXT-11 MISC-20 no TLS-RPT with enforce", setup: func(w world) { w.mail(); w.sts(`"v=STSv1; id=1"`); w.policy(goodPolicy) }, want: sec},
		{name: "RPT-TXT-3 MISC-24 two TLS-RPT records", setup: func(w world) { w.good(); w.dns(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:b@$D"`) }, want: sec},
		{name: "RPT-TXT-4 lower-case version", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=tlsrptv1; rua=mailto:a@$D"`), want: sec},
		{name: "RPT-TXT-6 MISC-21 address without mailto:", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=tlsrpt@$D"`), want: sec},
		{name: "RPT-TXT-7 MISC-21 DMARC size suffix", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D!10m"`), want: sec},
		{name: "RPT-TXT-6 http beside mailto", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D,http://r.$D/x"`), want: sec},
		{name: "RPT-TXT-8 two rua fields", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D; rua=mailto:b@$D"`), want: sec},
		{name: "RPT-TXT-10 report address in another domain needs no authorisation", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@other.test"`), want: sec},
		{name: "RPT-TXT-9 ruf extension", setup: tlsrptVariant(`_smtp._tls.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D; ruf=mailto:b@$D"`), want: sec},
		{name: "RPT-TXT-1 draft-era name", setup: tlsrptVariant(`_smtp-tlsrpt.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@$D"`), want: sec},
		{name: "RPT-TXT-12 TLS-RPT lookup fails", setup: func(w world) {
			w.good()
			w.l.DNS.SetRcode("_smtp._tls."+w.d, dns.TypeTXT, dns.RcodeServerFailure)
		}, want: sec},
	}
}

// smtpScenarios mirror TestSMTPAndDANEScenarios: the MX hosts' DNS, DANE
// records and policies. Each signs the lab root or not, so each has its
// own lab.
func smtpScenarios() []scenario {
	mx1 := func(w world) { w.mx(10, "mx1.$D") }
	mx12 := func(w world) { w.mx(10, "mx1.$D"); w.mx(20, "mx2.$D") }
	withPolicy := func(mx func(world), mode string, patterns ...string) func(w world) {
		return func(w world) { mx(w); w.enforce(mode, patterns...) }
	}
	daneHost := func(extra func(w world)) func(w world) {
		return func(w world) {
			w.signed()
			mx1(w)
			w.tlsa("mx1.$D", "usable")
			if extra != nil {
				extra(w)
			}
		}
	}
	enf := func(w world) { w.enforce("enforce", "mx1.$D") }
	return []scenario{
		{name: "A+: enforce, TLS-RPT, STARTTLS with valid certificates on every address, DANE with a rollover record", setup: daneHost(func(w world) {
			w.dns("mx1.$D. 300 IN AAAA ::1")
			w.tlsa("mx1.$D", dane.Record(2, 0, 1, w.l.CA.Intermediate()).String())
			w.dns(`_smtp._tls.mx1.$D. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@$D"`)
			enf(w)
		}), want: daneOnly, rule: sendpolicy.RuleDANEAll},
		{name: "A, not A+, without DANE when one address fails", setup: withPolicy(mx12, "enforce", "*.$D"), want: secure(".$D")},
		{name: "MISC-14 STS-SND-8 enforce and no STARTTLS", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "testing and no STARTTLS is a warning", setup: withPolicy(mx1, "testing", "mx1.$D"), want: nf},
		{name: "no policy and no STARTTLS is advice", setup: mx1, want: nf},
		{name: "MISC-14 STARTTLS refused and handshake failures", setup: withPolicy(mx12, "enforce", "*.$D"), want: secure(".$D")},
		{name: "A+ needs every address: probes pass but the AAAA lookup fails", setup: func(w world) {
			withPolicy(mx1, "enforce", "mx1.$D")(w)
			w.l.DNS.SetRcode("mx1."+w.d, dns.TypeAAAA, dns.RcodeServerFailure)
		}, want: secure("mx1.$D")},
		{name: "more addresses than the scan probes are named, not dropped", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "MISC-14 STARTTLS answered 220, then plain text", setup: withPolicy(mx1, "enforce", "*.$D"), want: secure(".$D")},
		{name: "MISC-14 TLS 1.0 only", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "MISC-11 NAME-1 STS-SND-14 certificate for another name", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "NAME-5 certificate names a pattern but not the MX host (Postfix divergence)", setup: withPolicy(mx1, "enforce", "*.$D"), want: secure(".$D")},
		{name: "MISC-13 expired certificate in testing", setup: withPolicy(mx1, "testing", "mx1.$D"), want: nf},
		{name: "certificate expiring within 14 days", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "STS-SND-9 chain larger than OpenSSL accepts (issue 8 #10)", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "MISC-13 incomplete chain and untrusted root", setup: withPolicy(mx12, "enforce", "*.$D"), want: secure(".$D")},
		// DANE first (RFC 8461 §2): whatever the certificate, Postfix
		// checks it against the TLSA records; MTA-STS never overrides.
		{name: "DANE-VER-12 the IPv6 address presents another certificate", setup: daneHost(func(w world) { w.dns("mx1.$D. 300 IN AAAA ::1"); enf(w) }), want: daneOnly},
		{name: "MISC-12 STS-DANE-6 STS-DANE-2 self-signed certificate with DANE under enforce", setup: daneHost(enf), want: daneOnly, rule: sendpolicy.RuleDANEAll},
		{name: "DANE-VER-3 expired self-signed certificate is fine for DANE-only", setup: daneHost(nil), want: daneOnly},
		{name: "MISC-40 MISC-50 STS-DANE-1 TLSA does not match a renewed key", setup: daneHost(enf), want: daneOnly},
		{name: "MISC-41 DANE-TA for a root the server does not send", setup: func(w world) {
			w.signed()
			mx1(w)
			w.tlsa("mx1.$D", dane.Record(2, 0, 1, w.l.CA.Root()).String())
		}, want: daneOnly},
		{name: "DANE-VER-4 DANE-TA of the intermediate", setup: func(w world) {
			w.signed()
			mx1(w)
			w.tlsa("mx1.$D", dane.Record(2, 0, 1, w.l.CA.Intermediate()).String())
		}, want: daneOnly},
		// RFC 7672 §2.2: signed but unusable records mean mandatory TLS
		// without authentication, which Postfix's "dane" level applies.
		{name: "MISC-44 only PKIX usages", setup: func(w world) {
			w.signed()
			mx1(w)
			w.tlsa("mx1.$D", "1 1 1 "+strings.Repeat("ab", 32))
		}, want: daneOpp, rule: sendpolicy.RuleDANEUnusableNo},
		{name: "MISC-45 malformed TLSA", setup: daneHost(func(w world) { w.tlsa("mx1.$D", "3 1 1 "+strings.Repeat("ab", 31)) }), want: daneOnly},
		{name: "MISC-49 DANE-DNS-13 TLSA in an unsigned zone", setup: daneHost(func(w world) { w.unsigned("$D") }), want: nf},
		{name: "DANE-DNS-5 addresses unsigned, TLSA signed", setup: daneHost(func(w world) {
			w.unsigned("mx1.$D")
			w.l.DNS.SetAD("_25._tcp.mx1."+w.d, true)
		}), want: nf},
		// RFC 7672 §2.2.1: with an unsigned MX RRset DANE cannot
		// authenticate the destination; Postfix's own dane level (and
		// smtp_tls_dane_insecure_mx_policy) may still use the host's TLSA.
		{name: "DANE-DNS-4 MX RRset unsigned, MX host signed", setup: func(w world) {
			w.signed()
			w.mx(10, "mx.provider-$D")
			w.tlsa("mx.provider-$D", "usable")
			w.unsigned("$D")
		}, want: nf},
		{name: "MISC-42 STS-DANE-3 DANE-DNS-2 DANE-DNS-3 TLSA lookup SERVFAIL from a validating resolver", setup: func(w world) {
			w.signed()
			mx1(w)
			w.l.DNS.SetRcode("_25._tcp.mx1."+w.d, dns.TypeTLSA, dns.RcodeServerFailure)
			enf(w)
		}, want: temp, rule: sendpolicy.RuleDANETemporary},
		{name: "DANE-DNS-9 MISC-43 _tcp NXDOMAIN", setup: daneHost(func(w world) { w.l.DNS.SetRcode("_tcp.mx1."+w.d, dns.TypeANY, dns.RcodeNameError) }), want: daneOnly},
		{name: "MISC-46 DANE on one MX only", setup: daneHost(func(w world) { w.mx(20, "mx2.$D") }), want: daneOpp, rule: sendpolicy.RuleDANESome},
		{name: "MISC-48 DANE-REC-7 DANE-VER-6 DANE and no STARTTLS", setup: daneHost(nil), want: daneOnly},
		{name: "DANE-DNS-1 resolver that does not validate", setup: func(w world) { mx1(w); w.tlsa("mx1.$D", "usable") }, want: nf},
		{name: "DANE-DNS-6 MX host is an alias; TLSA at the expanded name", setup: func(w world) {
			w.signed()
			w.dns("$D. 300 IN MX 10 alias.mail.$D.", "alias.mail.$D. 300 IN CNAME real.mail.$D.", "real.mail.$D. 300 IN A 192.0.2.25")
			w.tlsa("real.mail.$D", "usable")
		}, want: daneOnly},
		// STS-DANE-5: Postfix applies DANE and skips the MTA-STS patterns
		// (as with postfix-tlspol); the scan reports the mismatch.
		{name: "STS-DANE-5 a DANE-valid MX outside the policy patterns is still an error", setup: func(w world) {
			w.signed()
			w.mx(10, "mx.other-$D")
			w.tlsa("mx.other-$D", "usable")
			enf(w)
		}, want: daneOnly},
		{name: "DANE-DNS-8 TLSA owner is a CNAME to a shared RRset", setup: func(w world) {
			w.signed()
			mx1(w)
			c := w.l.CA.MustIssue(w.t, lab.LeafOptions{DNSNames: []string{"mx1." + w.d}})
			w.dns("_25._tcp.mx1.$D. 300 IN CNAME tlsa1._dane.$D.", "tlsa1._dane.$D. 300 IN TLSA "+dane.Record(3, 1, 1, c.Leaf).String())
		}, want: daneOnly},
		{name: "banner 421 is not proof of a fault", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "stall after the banner", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
		{name: "unreachable everywhere points at the scanner's network", setup: withPolicy(mx1, "enforce", "mx1.$D"), want: secure("mx1.$D")},
	}
}

// allScenarios is both tables; SMTP scenarios need their own lab.
func allScenarios() []scenario {
	out := scenarios()
	for _, s := range smtpScenarios() {
		s.own = true
		out = append(out, s)
	}
	return out
}

// domainFor names scenario i's domain.
func domainFor(i int) string { return fmt.Sprintf("s%d.test", i) }

// TestScenarios resolves every scenario and checks the reply and the rule;
// then real Postfix, postmap -q over socketmap, must get the same replies.
func TestScenarios(t *testing.T) {
	top := t
	shared := lab.New(t)
	var (
		mu     sync.Mutex
		routes = map[string]*resolver.Resolver{} // domain → the scenario's resolver
		wants  = map[string]string{}             // postmap key → what postmap must print
	)
	t.Run("resolve", func(tt *testing.T) {
		for i, sc := range allScenarios() {
			tt.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				// The labs and resolvers live until the postmap check is done.
				l := shared
				if sc.own {
					l = lab.New(top)
				}
				w := world{t: t, l: l, d: domainFor(i)}
				sc.setup(w)
				e := newEnvOwned(t, top, l)
				zone := sendpolicy.Zone{RequireSNI: true}
				d, _ := e.r.Decide(context.Background(), w.d, zone)
				got := d.Reply(zone).String()
				want := strings.ReplaceAll(sc.want, "$D", w.d)
				if got != want && !(want == temp && strings.HasPrefix(got, temp+" ")) {
					t.Errorf("reply %q, want %q (rule %s: %s)", got, want, d.Rule, d.Reason())
				}
				if sc.rule != "" && d.Rule != sc.rule {
					t.Errorf("rule %s, want %s (%s)", d.Rule, sc.rule, d.Reason())
				}
				mu.Lock()
				routes[w.d] = e.r
				wants[w.d] = postmapWant(want)
				wants["["+strings.ToUpper(w.d)+"]:25"] = postmapWant(want)
				mu.Unlock()
			})
		}
	})
	// Real Postfix as the client, while every scenario's resolver still
	// runs: one postmap process for every key (a TEMP reply ends postmap,
	// so those keys go one by one).
	if t.Failed() {
		return
	}
	t.Run("postmap", func(t *testing.T) {
		pm := postmapCmd(t)
		if pm == nil {
			return
		}
		zones := resolver.Zones{Default: sendpolicy.Zone{RequireSNI: true}}
		addr := serveSocketmap(t, func(ctx context.Context, req socketmap.Request) socketmap.Reply {
			name, _, _ := sendpolicy.NextHop(req.Key)
			mu.Lock()
			r := routes[name]
			mu.Unlock()
			if r == nil {
				return socketmap.Reply{Status: socketmap.Perm, Data: "unknown scenario"}
			}
			return r.Handler(zones)(ctx, req)
		})
		var batch []string
		for key, want := range wants {
			if want == "TEMP" {
				if got := pm.query(t, addr, key); got != want {
					t.Errorf("postmap -q %s: %q, want %q", key, got, want)
				}
				continue
			}
			batch = append(batch, key)
		}
		got := pm.queryAll(t, addr, batch)
		t.Logf("postmap answered %d keys in one run (%d found) and %d TEMP keys one by one", len(batch), len(got), len(wants)-len(batch))
		if len(batch) < 200 {
			t.Errorf("only %d keys checked with postmap", len(batch))
		}
		for _, key := range batch {
			g, ok := got[key]
			if !ok {
				g = "NOTFOUND"
			}
			if g != wants[key] {
				t.Errorf("postmap -q %s: %q, want %q", key, g, wants[key])
			}
		}
	})
}

// TestScenarioNamesCovered: every scenario of the scan suite has an
// expected reply here, so a new scan scenario cannot skip the resolver.
func TestScenarioNamesCovered(t *testing.T) {
	have := map[string]bool{}
	for _, sc := range allScenarios() {
		if have[sc.name] {
			t.Errorf("scenario %q twice", sc.name)
		}
		have[sc.name] = true
	}
	re := regexp.MustCompile(`\{name: "([^"]+)"`)
	for _, f := range []string{"../check/lab_test.go", "../check/smtp_lab_test.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if !have[m[1]] {
				missing = append(missing, m[1])
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("%s has scenarios without an expected resolver reply: %q", f, missing)
		}
	}
}

// postmap runs Debian's postfix postmap(1) with a throwaway configuration
// directory.
type postmap struct{ bin, dir string }

func postmapCmd(t *testing.T) *postmap {
	t.Helper()
	bin, err := exec.LookPath("postmap")
	if err != nil {
		for _, p := range []string{"/usr/sbin/postmap", "/sbin/postmap"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set: postmap (Debian package postfix) must be installed: %v", err)
		}
		t.Skipf("postmap not installed (apt-get install postfix): the Postfix client check is skipped")
	}
	dir := t.TempDir()
	cf := "compatibility_level = 3.6\nmyhostname = postmap.test\nmydomain = test\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	return &postmap{bin: bin, dir: dir}
}

// query returns what postmap makes of one lookup: the value, "NOTFOUND"
// or "TEMP".
func (p *postmap) query(t *testing.T, addr, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "-c", p.dir, "-q", key, "socketmap:inet:"+addr+":postfix")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	switch {
	case err == nil:
		return strings.TrimSuffix(stdout.String(), "\n")
	case strings.Contains(stderr.String(), "socketmap server temporary error"):
		return "TEMP"
	case stdout.Len() == 0 && stderr.Len() == 0:
		return "NOTFOUND"
	}
	t.Fatalf("postmap -q %s: %v\n%s%s", key, err, stdout.String(), stderr.String())
	return ""
}

// queryAll looks keys up with one postmap process (postmap -q - reads
// keys from standard input and prints "key<TAB>value" for those found).
func (p *postmap) queryAll(t *testing.T, addr string, keys []string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "-c", p.dir, "-q", "-", "socketmap:inet:"+addr+":postfix")
	cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 || err != nil && stdout.Len() == 0 {
		t.Fatalf("postmap -q -: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			out[k] = v
		}
	}
	return out
}

// postmapWant is what postmap prints for a reply.
func postmapWant(reply string) string {
	switch {
	case reply == nf:
		return "NOTFOUND"
	case strings.HasPrefix(reply, temp):
		return "TEMP"
	}
	return strings.TrimPrefix(reply, "OK ")
}

// serveSocketmap serves h on a loopback port.
func serveSocketmap(t *testing.T, h socketmap.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &socketmap.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}
