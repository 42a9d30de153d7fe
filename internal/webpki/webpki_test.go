package webpki

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

func chainOf(t *testing.T, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// TestEveryProblemAtOnce: an expired certificate for the wrong name from an
// CA that the server does not send the intermediate of reports all three
// (STS-FETCH-5, STS-FETCH-6, NAME-2).
func TestEveryProblemAtOnce(t *testing.T) {
	ca, other := lab.MustCA(t, "trusted"), lab.MustCA(t, "other")
	now := time.Now()
	leaf := other.MustIssue(t, lab.LeafOptions{DNSNames: []string{"www.example.test"}, NotBefore: now.Add(-60 * 24 * time.Hour), NotAfter: now.Add(-2 * 24 * time.Hour), OmitIntermediate: true})
	v := Verify(chainOf(t, leaf), "mta-sts.example.test", ca.Pool(), now)
	for _, c := range []Code{Expired, IncompleteChain, NameMismatch} {
		if !v.Has(c) {
			t.Errorf("missing %s in %+v", c, v.Problems)
		}
	}
	if v.OK() || v.Trusted || v.NameMatch {
		t.Errorf("verdict %+v should fail", v)
	}
	for _, p := range v.Problems {
		if p.Code == NameMismatch && !strings.Contains(p.Detail, "www.example.test") {
			t.Errorf("name mismatch should list the names: %s", p.Detail)
		}
	}
}

// NAME-3, NAME-4, NAME-7: names compare case-insensitively, a wildcard
// covers exactly one label (Go's VerifyHostname, CN ignored).
func TestGoodChainAndWildcard(t *testing.T) {
	ca := lab.MustCA(t, "trusted")
	now := time.Now()
	tests := []struct {
		names []string
		host  string
		ok    bool
	}{
		{[]string{"mta-sts.example.test"}, "mta-sts.example.test", true},
		{[]string{"MTA-STS.Example.TEST"}, "mta-sts.example.test", true},
		{[]string{"*.example.test"}, "mta-sts.example.test", true},
		{[]string{"*.example.test"}, "mta-sts.sub.example.test", false}, // NAME-4
		{[]string{"*.example.test"}, "example.test", false},
		{[]string{"mta-sts.provider.test"}, "mta-sts.example.test", false},
	}
	for _, tt := range tests {
		v := Verify(chainOf(t, ca.MustIssue(t, lab.LeafOptions{DNSNames: tt.names})), tt.host, ca.Pool(), now)
		if v.OK() != tt.ok {
			t.Errorf("%v for %s: OK = %v, want %v (%+v)", tt.names, tt.host, v.OK(), tt.ok, v.Problems)
		}
	}
	if v := Verify(nil, "x", ca.Pool(), now); !v.Has(NoCertificate) {
		t.Errorf("empty chain: %+v", v)
	}
}

func TestDescribe(t *testing.T) {
	ca := lab.MustCA(t, "trusted")
	d := Describe(chainOf(t, ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"a.test"}, RSA: true})))
	if len(d) != 2 || d[0].KeyType != "RSA" || len(d[0].SPKISHA256) != 64 || !d[1].IsCA {
		t.Errorf("Describe = %+v", d)
	}
}
