package sendpolicy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/mtasts"
	"github.com/mailtls/mailtls/internal/resolve"
)

func TestNextHop(t *testing.T) {
	ok := map[string]string{
		"example.com":                   "example.com",
		"Example.COM.":                  "example.com", // STS-SND-17
		"[example.com]:25":              "example.com", // STS-TXT-20: smart host
		"[smtp.isp.example]":            "smtp.isp.example",
		"[smtp.isp.example]:submission": "smtp.isp.example",
		"relay.example:587":             "relay.example",
		"bücher.example":                "xn--bcher-kva.example", // U-labels to A-labels
		"  example.com ":                "example.com",
	}
	for in, want := range ok {
		got, why, good := NextHop(in)
		if !good || got != want {
			t.Errorf("NextHop(%q) = %q, %q, %v; want %q", in, got, why, good, want)
		}
	}
	for _, in := range []string{
		"", ".example.com", "[127.0.0.1]", "[ipv6:::1]", "[::1]", "192.0.2.1", "[example.com",
		"[example.com]junk", "example.com:25:26", strings.Repeat("a", 64) + ".example",
		"\xff\xfe.example", "exa mple.com", "a..b", "ex_ample.com", "example.com:bad port",
	} {
		if got, why, good := NextHop(in); good {
			t.Errorf("NextHop(%q) = %q; want refused", in, got)
		} else if why == "" {
			t.Errorf("NextHop(%q) refused without a reason", in)
		}
	}
}

func FuzzNextHop(f *testing.F) {
	for _, s := range []string{"example.com", "[a.example]:25", ".x", "[::1]", "bücher.example", "a:b", "[", "\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		name, why, ok := NextHop(key)
		if !ok {
			if why == "" {
				t.Fatal("refused without a reason")
			}
			return
		}
		if err := domain.CheckHostname(name); err != nil || name != strings.ToLower(name) {
			t.Fatalf("NextHop(%q) = %q, not a canonical host name: %v", key, name, err)
		}
		if again, _, ok := NextHop(name); !ok || again != name {
			t.Fatalf("not idempotent: %q -> %q -> %q", key, name, again)
		}
	})
}

// answer builds evidence for the DANE tests.
func answer(status resolve.Status, auth bool, recs ...resolve.Record) *resolve.Answer {
	return &resolve.Answer{Status: status, Authenticated: auth, AD: auth, Validating: true, Records: recs}
}

func addr(s string) resolve.Record { return resolve.Record{Type: "A", Addr: netip.MustParseAddr(s)} }

const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func tlsa(u, s, m uint8) resolve.Record {
	return resolve.Record{Type: "TLSA", Usage: u, Selector: s, MatchingType: m, Data: digest, Value: "3 1 1 " + digest}
}

func host(name string, aAuth bool, t *resolve.Answer) DANEHost {
	return DANEHost{Host: name, A: answer(resolve.StatusOK, aAuth, addr("192.0.2.1")), AAAA: answer(resolve.StatusNoData, aAuth), TLSA: t}
}

func TestJudgeDANE(t *testing.T) {
	secureMX := answer(resolve.StatusOK, true, resolve.Record{Type: "MX", Host: "mx1.example"})
	usable := answer(resolve.StatusOK, true, tlsa(3, 1, 1))
	pkix := answer(resolve.StatusOK, true, tlsa(1, 1, 1))
	none := answer(resolve.StatusNXDomain, true)
	fail := &resolve.Answer{Status: resolve.StatusServFail, Rcode: "SERVFAIL"}
	tests := []struct {
		name string
		in   DANEInput
		want DANEState
	}{
		{"not validating", DANEInput{MX: secureMX}, DANENotValidating},
		{"RFC 7672 §2.1.1 MX lookup fails", DANEInput{Validating: true, MX: fail}, DANETemporary},
		{"RFC 7672 §2.2.1 insecure MX", DANEInput{Validating: true, MX: answer(resolve.StatusOK, false), Hosts: []DANEHost{host("mx1", true, usable)}}, DANENone},
		{"all usable", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", true, usable), host("mx2", true, usable)}}, DANEAll},
		{"one of two", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", true, usable), host("mx2", true, none)}}, DANESome},
		{"insecure addresses do not count", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", false, usable)}}, DANENone},
		{"STS-DANE-4 only PKIX usages", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", true, pkix)}}, DANEUnusable},
		{"STS-DANE-3 TLSA SERVFAIL", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", true, usable), host("mx2", true, fail)}}, DANETemporary},
		{"insecure TLSA", DANEInput{Validating: true, MX: secureMX, Hosts: []DANEHost{host("mx1", true, answer(resolve.StatusOK, false, tlsa(3, 1, 1)))}}, DANENone},
		{"null MX", DANEInput{Validating: true, MX: answer(resolve.StatusOK, true, resolve.Record{Type: "MX", Host: "."})}, DANENone},
	}
	for _, tt := range tests {
		if got := JudgeDANE(tt.in); got.State != tt.want || got.Reason == "" {
			t.Errorf("%s: %s (%s), want %s", tt.name, got.State, got.Reason, tt.want)
		}
	}
}

func policy(mode mtasts.Mode, mx ...string) *mtasts.Policy {
	return &mtasts.Policy{Version: "STSv1", Mode: mode, MaxAge: 86400, MX: mx}
}

func TestDecide(t *testing.T) {
	enforce := STS{Policy: policy(mtasts.ModeEnforce, "mx.example.com", "*.example.net")}
	testing_ := STS{Policy: policy(mtasts.ModeTesting, "mx.example.com")}
	tests := []struct {
		name string
		dane DANEState
		sts  STS
		zone Zone
		kind Kind
		rule Rule
	}{
		{"RFC 8461 §2 DANE first", DANEAll, enforce, Zone{}, KindDANEOnly, RuleDANEAll},
		{"STS-DANE-3 temporary DANE failure is never downgraded", DANETemporary, enforce, Zone{}, KindTemp, RuleDANETemporary},
		{"some DANE hosts + enforce", DANESome, enforce, Zone{}, KindDANEOnly, RuleDANESomeSTS},
		{"some DANE hosts, no MTA-STS", DANESome, STS{}, Zone{}, KindDANE, RuleDANESome},
		{"STS-DANE-4 unusable TLSA + enforce", DANEUnusable, enforce, Zone{}, KindSecure, RuleDANEUnusable},
		{"unusable TLSA alone", DANEUnusable, STS{}, Zone{}, KindDANE, RuleDANEUnusableNo},
		{"RFC 8461 §5 enforce", DANENone, enforce, Zone{}, KindSecure, RuleSTSEnforce},
		{"enforce without a validating resolver", DANENotValidating, enforce, Zone{}, KindSecure, RuleSTSEnforce},
		{"STS-SND-11 testing", DANENone, testing_, Zone{}, KindNotFound, RuleSTSTesting},
		{"strict_testing", DANENone, testing_, Zone{StrictTesting: true}, KindSecure, RuleSTSStrict},
		{"STS-SND-12 none", DANENone, STS{Policy: policy(mtasts.ModeNone)}, Zone{}, KindNotFound, RuleSTSNone},
		{"STS-SND-16 temporary, fail open", DANENone, STS{Temporary: true}, Zone{}, KindNotFound, RuleSTSTempOpen},
		{"STS-SND-16 temporary, defer", DANENone, STS{Temporary: true}, Zone{DeferOnSTSFailure: true}, KindTemp, RuleSTSTempDefer},
		{"RFC 8461 §3.3 no policy", DANENone, STS{}, Zone{}, KindNotFound, RuleNoPolicy},
	}
	for _, tt := range tests {
		d := Decide("example.com", DANEVerdict{State: tt.dane, Reason: "x"}, tt.sts, tt.zone)
		if d.Kind != tt.kind || d.Rule != tt.rule || d.Reason() == "" {
			t.Errorf("%s: %s %s (%q), want %s %s", tt.name, d.Kind, d.Rule, d.Reason(), tt.kind, tt.rule)
		}
	}
}

func TestReply(t *testing.T) {
	p := &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeEnforce, MaxAge: 604800,
		MX:         []string{"mail.example.com", "*.example.net", "MAIL.example.com", "backupmx.example.com"},
		Extensions: []mtasts.Extension{{Name: "ext", Value: "{x}"}, {Name: "note", Value: "ok"}}}
	d := Decision{Domain: "example.com", Kind: KindSecure, Policy: p}
	tests := []struct {
		zone Zone
		want string
	}{
		{Zone{}, "OK secure match=mail.example.com:.example.net:backupmx.example.com"},
		{Zone{RequireSNI: true}, "OK secure match=mail.example.com:.example.net:backupmx.example.com servername=hostname"},
		// TLSRPT_README: policy_type, policy_domain, one mx_host_pattern per
		// mx line, one { policy_string = ... } per policy line.
		{Zone{RequireSNI: true, TLSRPT: true}, "OK secure match=mail.example.com:.example.net:backupmx.example.com servername=hostname" +
			" policy_type=sts policy_domain=example.com mx_host_pattern=mail.example.com mx_host_pattern=*.example.net mx_host_pattern=mail.example.com mx_host_pattern=backupmx.example.com" +
			" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mail.example.com } { policy_string = mx: *.example.net }" +
			" { policy_string = mx: MAIL.example.com } { policy_string = mx: backupmx.example.com } { policy_string = max_age: 604800 } { policy_string = note: ok }"},
	}
	for _, tt := range tests {
		if got := d.Reply(tt.zone).String(); got != tt.want {
			t.Errorf("zone %+v:\n got %q\nwant %q", tt.zone, got, tt.want)
		}
	}
	for k, want := range map[Kind]string{KindDANEOnly: "OK dane-only", KindDANE: "OK dane", KindNotFound: "NOTFOUND ", KindInvalid: "NOTFOUND "} {
		if got := (Decision{Kind: k}).Reply(Zone{TLSRPT: true}).String(); got != want {
			t.Errorf("%s: %q, want %q (TLSRPT attributes only on STS replies, TLSRPT_README note 2)", k, got, want)
		}
	}
	if got := (Decision{Kind: KindTemp, Rule: RuleDANETemporary, detail: "DNSSEC\nfailed"}).Reply(Zone{}).String(); got != "TEMP DNSSEC?failed" {
		t.Errorf("TEMP reason must be one printable line: %q", got)
	}
}
