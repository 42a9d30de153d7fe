package mtasts

import (
	"strings"
	"testing"
)

func view(vs []SenderView, sender string) SenderView {
	for _, v := range vs {
		if v.Sender == sender {
			return v
		}
	}
	return SenderView{}
}

// TestSenderViews pins the divergences of spec-checklist §H: each case names
// a sender whose result differs from RFC 8461.
func TestSenderViews(t *testing.T) {
	rec := []string{"v=STSv1; id=1"}
	tests := []struct {
		name     string
		in       SenderInput
		sender   string
		applies  bool
		mode     Mode
		rfcApply bool
		rfcMode  Mode
	}{
		{"text/html: Postfix resolver drops it (STS-FETCH-10)",
			SenderInput{TXT: rec, ContentType: "text/html", HasContentType: true, Body: []byte(good)},
			SenderSnawoot, false, "", true, ModeEnforce},
		{"no Content-Type: go-mtasts drops it",
			SenderInput{TXT: rec, Body: []byte(good)},
			SenderGoMTASTS, false, "", true, ModeEnforce},
		{"no Content-Type: postfix-tlspol (v1.12.1) drops it",
			SenderInput{TXT: rec, Body: []byte(good)},
			SenderTLSPol, false, "", true, ModeEnforce},
		{"text/html: postfix-tlspol (v1.12.1) drops it",
			SenderInput{TXT: rec, ContentType: "text/html", HasContentType: true, Body: []byte(good)},
			SenderTLSPol, false, "", true, ModeEnforce},
		{"no Content-Type: mox does not care",
			SenderInput{TXT: rec, Body: []byte(good)},
			SenderMox, true, ModeEnforce, true, ModeEnforce},
		{"conflicting duplicate mode: last wins in postfix-mta-sts-resolver (STS-POL-14)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: testing\nmx: a.example\nmode: enforce\nmax_age: 86400\n")},
			SenderSnawoot, true, ModeEnforce, true, ModeTesting},
		{"conflicting duplicate mode: last wins in go-mtasts",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: testing\nmx: a.example\nmode: enforce\nmax_age: 86400\n")},
			SenderGoMTASTS, true, ModeEnforce, true, ModeTesting},
		{"blank line: postfix-tlspol (v1.12.1) rejects it too (STS-POL-3)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: enforce\n\nmx: a.example\nmax_age: 604800\n")},
			SenderTLSPol, false, "", false, ""},
		{"mx with a trailing dot: postfix-tlspol accepts it (STS-POL-10)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: enforce\nmx: test.\nmax_age: 604800\n")},
			SenderTLSPol, true, ModeEnforce, false, ""},
		{"testing without mx: postfix-tlspol (v1.12.1) rejects it like RFC 8461",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: testing\nmax_age: 604800\n")},
			SenderTLSPol, false, "", false, ""},
		{"IP-literal mx: postfix-tlspol (v1.12.1) rejects it like RFC 8461 §4.1",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: enforce\nmx: *.1.2.3.4\nmax_age: 604800\n")},
			SenderTLSPol, false, "", false, ""},
		{"tab in an extension value: postfix-tlspol (v1.12.1) rejects it like RFC 8461",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good + "note: a\tb\r\n")},
			SenderTLSPol, false, "", false, ""},
		{"bad extension name: postfix-tlspol (v1.12.1) rejects it like RFC 8461",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good + "_note: x\r\n")},
			SenderTLSPol, false, "", false, ""},
		{"conflicting duplicate mode: postfix-tlspol keeps the first, like RFC 8461",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: testing\nmx: a.example\nmode: enforce\nmax_age: 86400\n")},
			SenderTLSPol, true, ModeTesting, true, ModeTesting},
		{"blank line: go-mtasts rejects it",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: enforce\n\nmx: a.example\nmax_age: 604800\n")},
			SenderGoMTASTS, false, "", false, ""},
		{"colon in extension value: go-mtasts rejects it (STS-POL-16)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good + "contact: https://example.com/x\r\n")},
			SenderGoMTASTS, false, "", true, ModeEnforce},
		{"leading space: postfix-mta-sts-resolver loses the field (STS-POL-4)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 604800\n")},
			SenderSnawoot, false, "", false, ""},
		{"leading space: postfix-tlspol (v1.12.1) rejects the key like RFC 8461",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\n mode: enforce\nmx: a.example\nmax_age: 604800\n")},
			SenderTLSPol, false, "", false, ""},
		{"max_age over the cap: postfix-tlspol clamps (AMB-3)",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n")},
			SenderTLSPol, true, ModeEnforce, false, ""},
		{"unrelated TXT: go-mtasts sees two records (STS-TXT-3)",
			SenderInput{TXT: []string{"v=STSv1; id=1", "v=spf1 -all"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderGoMTASTS, false, "", true, ModeEnforce},
		{"space before semicolon, single record: RFC 8461 applies it (STS-TXT-7)",
			SenderInput{TXT: []string{"v=STSv1 ; id=1"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderGoMTASTS, true, ModeEnforce, true, ModeEnforce},
		{"space before semicolon beside another record: mox accepts it, the RFC filter drops it (STS-TXT-7)",
			SenderInput{TXT: []string{"v=STSv1 ; id=1", "v=spf1 -all"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderMox, true, ModeEnforce, false, ""},
		{"space before semicolon beside another record: postfix-mta-sts-resolver accepts it",
			SenderInput{TXT: []string{"v=STSv1 ; id=1", "v=spf1 -all"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderSnawoot, true, ModeEnforce, false, ""},
		{"space before semicolon beside another record: postfix-tlspol accepts it",
			SenderInput{TXT: []string{"v=STSv1 ; id=1", "v=spf1 -all"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderTLSPol, true, ModeEnforce, false, ""},
		{"repeated id: mox rejects the record (STS-TXT-10)",
			SenderInput{TXT: []string{"v=STSv1; id=1; id=2"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderMox, false, "", true, ModeEnforce},
		{"UTF-8 extension without charset: postfix-mta-sts-resolver cannot decode",
			SenderInput{TXT: rec, ContentType: "text/plain", HasContentType: true, Body: []byte(good + "note: grüße\r\n")},
			SenderSnawoot, false, "", true, ModeEnforce},
		{"id with a hyphen: postfix-tlspol (v1.12.1) rejects it like RFC 8461 (STS-TXT-9)",
			SenderInput{TXT: []string{"v=STSv1; id=2024-01-01"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderTLSPol, false, "", false, ""},
		{"second id invalid: postfix-tlspol ignores it like RFC 8461",
			SenderInput{TXT: []string{"v=STSv1; id=1; id=x-y"}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderTLSPol, true, ModeEnforce, true, ModeEnforce},
		{"trailing blank after the id: postfix-tlspol rejects it like RFC 8461 (STS-TXT-14)",
			SenderInput{TXT: []string{"v=STSv1; id=1 "}, ContentType: "text/plain", HasContentType: true, Body: []byte(good)},
			SenderTLSPol, false, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := SenderViews(tt.in)
			if vs[0].Sender != SenderRFC {
				t.Fatalf("first view is %q, want RFC 8461", vs[0].Sender)
			}
			rfc := vs[0]
			if rfc.Applies != tt.rfcApply || rfc.Mode != tt.rfcMode {
				t.Errorf("RFC view = %+v, want applies %v mode %q", rfc, tt.rfcApply, tt.rfcMode)
			}
			got := view(vs, tt.sender)
			if got.Applies != tt.applies || got.Mode != tt.mode {
				t.Errorf("%s view = %+v, want applies %v mode %q", tt.sender, got, tt.applies, tt.mode)
			}
			if !got.Applies && got.Reason == "" {
				t.Errorf("%s gives no reason", tt.sender)
			}
			if differs := tt.applies != tt.rfcApply || tt.mode != tt.rfcMode; got.Same(rfc) == differs {
				t.Errorf("%s: Same(RFC) = %v, want %v", tt.sender, got.Same(rfc), !differs)
			}
		})
	}
}

// A clean, canonical policy served as text/plain is read the same way by
// every modelled sender.
func TestSenderViewsAgreeOnCleanPolicy(t *testing.T) {
	p := &Policy{Version: "STSv1", Mode: ModeEnforce, MaxAge: 604800, MX: []string{"mx1.example.com", "*.example.net"}}
	vs := SenderViews(SenderInput{TXT: []string{"v=STSv1; id=20261128"}, ContentType: "text/plain; charset=utf-8", HasContentType: true, Body: []byte(p.String())})
	for _, v := range vs[1:] {
		if !v.Same(vs[0]) {
			t.Errorf("%s = %+v, differs from RFC 8461 %+v", v.Sender, v, vs[0])
		}
	}
}

// TestSenderMatch: go-mtasts compares names after turning A-labels into
// Unicode, so a U-label pattern (invalid for RFC 8461 §3.2) still matches.
func TestSenderMatch(t *testing.T) {
	body := []byte("version: STSv1\nmode: enforce\nmx: \u00f1aca.com\nmx: *.example.org\nmax_age: 604800\n")
	vs := SenderViews(SenderInput{TXT: []string{"v=STSv1; id=1"}, ContentType: "text/plain", HasContentType: true, Body: body})
	if view(vs, SenderRFC).Applies {
		t.Fatal("RFC 8461 applies a policy with a U-label mx")
	}
	g := view(vs, SenderGoMTASTS)
	// x/net/idna, which go-mtasts uses, decodes only a lower-case "xn--".
	for host, want := range map[string]bool{"xn--aca-6ma.com": true, "xn--aca-6ma.com.": true, "XN--ACA-6MA.COM": false, "mx.example.org": true, "a.mx.example.org": false, "example.org": false} {
		if got := g.Match(host); got != want {
			t.Errorf("go-mtasts Match(%q) = %v, want %v", host, got, want)
		}
	}
	if view(vs, SenderMox).Match("xn--aca-6ma.com") {
		t.Error("mox has no policy, so nothing matches")
	}
}

func TestPyHelpers(t *testing.T) {
	if got := pySplitLines("a\r\nb\rc\nd\u2028e\n\nf"); strings.Join(got, "|") != "a|b|c|d|e||f" {
		t.Errorf("pySplitLines = %q", got)
	}
	for s, want := range map[string]int64{"0604800": 604800, "+5": 5, "1_000": 1000, " 7 ": 7} {
		if n, ok := pyInt(s); !ok || n != want {
			t.Errorf("pyInt(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "1__0", "_1", "1.5", "abc"} {
		if _, ok := pyInt(s); ok {
			t.Errorf("pyInt(%q) accepted", s)
		}
	}
}

func FuzzSenderViews(f *testing.F) {
	f.Add("v=STSv1; id=1", "text/plain", "", []byte(good))
	f.Add("v=STSv1 ; id=1", "", "", []byte("version: STSv1\n\nmode: none\nmax_age: 1"))
	f.Add("v=STSv1; id=1", "text/plain", "gzip", gzipped(good))
	f.Add("v=STSv1; id=1", "text/plain", "deflate", []byte(good))
	f.Fuzz(func(t *testing.T, txt, ct, coding string, body []byte) {
		vs := SenderViews(SenderInput{TXT: []string{txt}, ContentType: ct, HasContentType: ct != "", ContentEncoding: coding, Body: body})
		for _, v := range vs {
			if !v.Applies && v.Reason == "" {
				t.Fatalf("%s: no policy without a reason", v.Sender)
			}
			if v.Applies && v.Mode != ModeEnforce && v.Mode != ModeTesting && v.Mode != ModeNone {
				t.Fatalf("%s: applies with mode %q", v.Sender, v.Mode)
			}
		}
	})
}
