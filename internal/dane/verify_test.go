package dane

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	chain := func(c ...*x509.Certificate) []*x509.Certificate { return c }
	var (
		ecChain   = chain(p.leafEC, p.inter)
		ecFull    = chain(p.leafEC, p.inter, p.root)
		rsaChain  = chain(p.leafRSA, p.inter)
		cnChain   = chain(p.leafCN, p.inter)
		nextHop   = chain(p.leafNextHop, p.inter)
		wildChain = chain(p.leafWild, p.inter)
		expChain  = chain(p.leafExpired, p.inter)
		oldChain  = chain(p.leafOld, p.oldInter)
		selfChain = chain(p.selfSigned)
	)
	rec := func(u, s, m uint8, c *x509.Certificate) TLSA { return Record(u, s, m, c) }
	mxName := []string{"mx.example.com"}
	h32 := func(b byte) TLSA { return TLSA{3, 1, 1, []byte(strings.Repeat(string(rune(b)), 32))} }

	type tc struct {
		id         string
		records    []TLSA
		chain      []*x509.Certificate
		names      []string
		now        time.Time // zero: the fixed test time
		auth       bool
		matched    int  // index of the record in records that authenticates
		cert       int  // MatchedCert
		fromRecord bool // AnchorFromRecord
		codes      []Code
	}
	for _, c := range []tc{
		// DANE-VER-1: every selector/matching combination of DANE-EE.
		{id: "DANE-VER-1 3 0 0", records: []TLSA{rec(3, 0, 0, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 3 0 1", records: []TLSA{rec(3, 0, 1, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 3 0 2", records: []TLSA{rec(3, 0, 2, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 3 1 0", records: []TLSA{rec(3, 1, 0, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 3 1 1", records: []TLSA{rec(3, 1, 1, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 3 1 2", records: []TLSA{rec(3, 1, 2, p.leafEC)}, chain: ecChain, auth: true},
		{id: "DANE-VER-1 RSA leaf 3 1 1", records: []TLSA{rec(3, 1, 1, p.leafRSA)}, chain: rsaChain, auth: true},
		{id: "DANE-VER-1 second record matches", records: []TLSA{h32('x'), rec(3, 1, 1, p.leafEC)}, chain: ecChain, auth: true, matched: 1, codes: []Code{Mismatch}},

		// DANE-VER-2: agility: {3 1 1 X, 3 1 2 Y}, the certificate matches only X.
		{id: "DANE-VER-2 weaker digest only", records: []TLSA{rec(3, 1, 1, p.leafEC), rec(3, 1, 2, p.nextLeaf)}, chain: ecChain, cert: -1, codes: []Code{WeakerDigestOnly, Mismatch}},
		{id: "DANE-VER-2 stronger digest matches", records: []TLSA{rec(3, 1, 1, p.nextLeaf), rec(3, 1, 2, p.leafEC)}, chain: ecChain, auth: true, matched: 1, codes: []Code{Mismatch}},
		{id: "DANE-VER-2 Full is never ignored", records: []TLSA{rec(3, 1, 0, p.leafEC), rec(3, 1, 2, p.nextLeaf)}, chain: ecChain, auth: true, codes: []Code{Mismatch}},
		{id: "DANE-VER-2 agility per usage", records: []TLSA{rec(3, 1, 1, p.leafEC), rec(2, 1, 2, p.root)}, chain: ecChain, names: mxName, auth: true, codes: []Code{TANotInChain}},

		// DANE-VER-3: DANE-EE ignores dates, issuer and names.
		{id: "DANE-VER-3 expired self-signed", records: []TLSA{rec(3, 1, 1, p.selfSigned)}, chain: selfChain, auth: true},
		{id: "DANE-VER-3 names ignored", records: []TLSA{rec(3, 1, 1, p.leafEC)}, chain: ecChain, names: []string{"other.example.net"}, auth: true},
		{id: "DANE-VER-3 expired intermediate", records: []TLSA{rec(3, 0, 1, p.leafOld)}, chain: oldChain, auth: true},
		{id: "DANE-VER-3 EE compares the leaf only", records: []TLSA{rec(3, 1, 1, p.inter)}, chain: ecChain, cert: -1, codes: []Code{Mismatch}},

		// DANE-VER-4: DANE-TA.
		{id: "DANE-VER-4 2 0 1 intermediate", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: ecChain, names: mxName, auth: true, cert: 1},
		{id: "DANE-VER-4 2 1 1 intermediate", records: []TLSA{rec(2, 1, 1, p.inter)}, chain: ecChain, names: mxName, auth: true, cert: 1},
		{id: "DANE-VER-4 2 0 1 root sent", records: []TLSA{rec(2, 0, 1, p.root)}, chain: ecFull, names: mxName, auth: true, cert: 2},
		{id: "DANE-VER-4 RSA leaf", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: rsaChain, names: mxName, auth: true, cert: 1},
		{id: "DANE-VER-4 MISC-41 root not sent", records: []TLSA{rec(2, 0, 1, p.root)}, chain: ecChain, names: mxName, cert: -1, codes: []Code{TANotInChain}},
		{id: "DANE-VER-4 DANE-REC-9 2 1 1 root not sent", records: []TLSA{rec(2, 1, 1, p.root)}, chain: ecChain, names: mxName, cert: -1, codes: []Code{TANotInChain}},
		{id: "DANE-VER-4 2 0 0 root from DNS", records: []TLSA{rec(2, 0, 0, p.root)}, chain: ecChain, names: mxName, auth: true, cert: -1, fromRecord: true},
		{id: "DANE-VER-4 2 1 0 root key from DNS", records: []TLSA{rec(2, 1, 0, p.root)}, chain: ecChain, names: mxName, auth: true, cert: -1, fromRecord: true},
		{id: "DANE-VER-4 2 1 0 intermediate key, leaf only", records: []TLSA{rec(2, 1, 0, p.inter)}, chain: chain(p.leafEC), names: mxName, auth: true, cert: -1, fromRecord: true},
		{id: "DANE-VER-4 2 1 0 unrelated key", records: []TLSA{rec(2, 1, 0, p.oldInter)}, chain: ecChain, names: mxName, cert: -1, codes: []Code{TANotInChain}},
		{id: "DANE-VER-4 2 0 0 name mismatch", records: []TLSA{rec(2, 0, 0, p.root)}, chain: ecChain, names: []string{"mx.example.net"}, cert: -1, codes: []Code{NameMismatch}},
		{id: "DANE-VER-4 expired intermediate", records: []TLSA{rec(2, 0, 1, p.root)}, chain: chain(p.leafOld, p.oldInter, p.root), names: mxName, cert: -1, codes: []Code{TAPathInvalid}},
		{id: "DANE-VER-4 expired TA", records: []TLSA{rec(2, 0, 1, p.oldInter)}, chain: oldChain, names: mxName, cert: -1, codes: []Code{TAPathInvalid}},
		{id: "DANE-VER-4 expired leaf", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: expChain, names: mxName, cert: -1, codes: []Code{TAPathInvalid}},
		{id: "DANE-VER-4 valid at another time", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: expChain, names: mxName, now: now.Add(-60 * 24 * time.Hour), auth: true, cert: 1},
		{id: "DANE-VER-4 wrong issuer", records: []TLSA{rec(2, 0, 1, p.oldInter)}, chain: chain(p.leafEC, p.oldInter), names: mxName, now: now.Add(-60 * 24 * time.Hour), cert: -1, codes: []Code{TAPathInvalid}},
		{id: "DANE-VER-4 2 0 0 of the leaf", records: []TLSA{rec(2, 0, 0, p.selfSigned)}, chain: selfChain, names: mxName, now: now.Add(-600 * 24 * time.Hour), cert: -1, codes: []Code{TAIsLeaf}},
		{id: "DANE-VER-4 2 1 0 of the leaf", records: []TLSA{rec(2, 1, 0, p.selfSigned)}, chain: selfChain, names: mxName, now: now.Add(-600 * 24 * time.Hour), cert: -1, codes: []Code{TAIsLeaf}},
		{id: "DANE-VER-4 TA record of the leaf", records: []TLSA{rec(2, 0, 1, p.selfSigned)}, chain: selfChain, names: mxName, cert: -1, codes: []Code{TAIsLeaf}},
		{id: "DANE-VER-4 name mismatch", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: ecChain, names: []string{"mail.example.org"}, cert: -1, codes: []Code{NameMismatch}},
		{id: "DANE-VER-4 no names", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: ecChain, cert: -1, codes: []Code{NameMismatch}},

		// NAME-6: DANE-TA uses the CN when there is no DNS-ID.
		{id: "NAME-6 CN only", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: cnChain, names: mxName, auth: true, cert: 1},
		{id: "NAME-6 CN only, other name", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: cnChain, names: []string{"mx2.example.com"}, cert: -1, codes: []Code{NameMismatch}},
		{id: "NAME-6 wildcard", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: wildChain, names: mxName, auth: true, cert: 1},
		{id: "NAME-6 wildcard covers one label", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: wildChain, names: []string{"a.mx.example.com", "example.com"}, cert: -1, codes: []Code{NameMismatch}},
		{id: "NAME-6 case and trailing dot", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: ecChain, names: []string{"MX.Example.COM."}, auth: true, cert: 1},

		// DANE-VER-5: several reference identifiers.
		{id: "DANE-VER-5 next-hop name", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: nextHop, names: []string{"mx1.example.com", "example.com"}, auth: true, cert: 1},
		{id: "DANE-VER-5 base domain only", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: nextHop, names: []string{"mx1.example.com"}, cert: -1, codes: []Code{NameMismatch}},

		// MISC-47: records for the ECDSA chain, the server presents the RSA chain.
		{id: "MISC-47 RSA chain unmatched", records: []TLSA{rec(3, 1, 1, p.leafEC)}, chain: rsaChain, cert: -1, codes: []Code{Mismatch}},
		// MISC-40: renewal with a new key.
		{id: "MISC-40 new key not published", records: []TLSA{rec(3, 1, 1, p.leafEC)}, chain: chain(p.nextLeaf, p.inter), cert: -1, codes: []Code{Mismatch}},

		// Unusable sets (DANE-REC-2, DANE-REC-3; RFC 7672 §2.2).
		{id: "DANE-REC-3 PKIX only", records: []TLSA{rec(1, 1, 1, p.leafEC)}, chain: ecChain, cert: -1, codes: []Code{UnusableRecord, NoUsableRecords}},
		{id: "DANE-REC-2 malformed only", records: []TLSA{{3, 1, 1, make([]byte, 31)}}, chain: ecChain, cert: -1, codes: []Code{MalformedRecord, NoUsableRecords}},
		{id: "DANE-REC-3 mixed", records: []TLSA{rec(1, 1, 1, p.leafEC), rec(3, 1, 1, p.leafEC)}, chain: ecChain, auth: true, matched: 1, codes: []Code{UnusableRecord}},
		{id: "no records", cert: -1, chain: ecChain, codes: []Code{NoUsableRecords}},
		{id: "no certificate", records: []TLSA{rec(3, 1, 1, p.leafEC)}, cert: -1, codes: []Code{NoCertificate}},
		{id: "nil certificate", records: []TLSA{rec(3, 1, 1, p.leafEC)}, chain: chain(nil), cert: -1, codes: []Code{NoCertificate}},
		{id: "nil intermediate", records: []TLSA{rec(2, 0, 1, p.inter)}, chain: chain(p.leafEC, nil, p.inter), names: mxName, auth: true, cert: 2},
	} {
		t.Run(c.id, func(t *testing.T) {
			at := c.now
			if at.IsZero() {
				at = now
			}
			r := Verify(c.records, c.chain, VerifyOptions{Names: c.names, Now: at})
			if r.Authenticated != c.auth {
				t.Fatalf("Authenticated = %v, want %v; problems %+v", r.Authenticated, c.auth, r.Problems)
			}
			if c.auth {
				if r.Matched == nil || !r.Matched.Equal(c.records[c.matched]) {
					t.Errorf("Matched = %v, want %v", r.Matched, c.records[c.matched].Short())
				}
			} else if r.Matched != nil {
				t.Errorf("Matched = %v, want nil", r.Matched)
			}
			if r.MatchedCert != c.cert {
				t.Errorf("MatchedCert = %d, want %d", r.MatchedCert, c.cert)
			}
			if r.AnchorFromRecord != c.fromRecord {
				t.Errorf("AnchorFromRecord = %v, want %v", r.AnchorFromRecord, c.fromRecord)
			}
			var got []Code
			for _, pr := range r.Problems {
				got = append(got, pr.Code)
				if pr.Detail == "" {
					t.Errorf("problem %s has no detail", pr.Code)
				}
			}
			if len(got) != len(c.codes) {
				t.Fatalf("problems = %v, want %v\n%+v", got, c.codes, r.Problems)
			}
			for _, want := range c.codes {
				if !r.Has(want) {
					t.Errorf("problems = %v, want %v\n%+v", got, c.codes, r.Problems)
				}
			}
		})
	}
}

// The details name what to fix.
func TestVerifyDetails(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	mx := VerifyOptions{Names: []string{"mx.example.com"}, Now: now}
	for _, tc := range []struct {
		name    string
		records []TLSA
		chain   []*x509.Certificate
		opt     VerifyOptions
		want    []string
	}{
		{"EE mismatch shows the current record", []TLSA{Record(3, 1, 1, p.leafEC)}, []*x509.Certificate{p.leafRSA, p.inter}, mx, []string{Record(3, 1, 1, p.leafRSA).String(), "RFC 7672 §3.2"}},
		{"EE record of a CA", []TLSA{Record(3, 0, 1, p.inter)}, []*x509.Certificate{p.leafEC, p.inter}, mx, []string{"DANE Test Intermediate", "usage 2"}},
		{"TA not sent", []TLSA{Record(2, 0, 1, p.root)}, []*x509.Certificate{p.leafEC, p.inter}, mx, []string{"trust-anchor certificate", "3 1 1"}},
		{"expired intermediate", []TLSA{Record(2, 0, 1, p.root)}, []*x509.Certificate{p.leafOld, p.oldInter, p.root}, mx, []string{`"DANE Old Intermediate" expired on`}},
		{"name", []TLSA{Record(2, 0, 1, p.inter)}, []*x509.Certificate{p.leafCN, p.inter}, VerifyOptions{Names: []string{"a.example.org"}, Now: now}, []string{`no DNS names and its CN "mx.example.com"`, "a.example.org"}},
		{"agility", []TLSA{Record(3, 1, 1, p.leafEC), Record(3, 1, 2, p.nextLeaf)}, []*x509.Certificate{p.leafEC, p.inter}, mx, []string{"SHA2-512", "3 1 2 records are published too"}},
	} {
		r := Verify(tc.records, tc.chain, tc.opt)
		var all strings.Builder
		for _, pr := range r.Problems {
			all.WriteString(pr.Detail + "\n")
		}
		for _, w := range tc.want {
			if !strings.Contains(all.String(), w) {
				t.Errorf("%s: details lack %q:\n%s", tc.name, w, all.String())
			}
		}
	}
}

// Problems can remain when a record authenticates: a pre-published next
// key does not match yet (DANE-REC-5).
func TestVerifyAuthenticatedWithProblems(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	r := Verify([]TLSA{Record(3, 1, 1, p.nextLeaf), Record(3, 1, 1, p.leafEC)}, []*x509.Certificate{p.leafEC, p.inter}, VerifyOptions{Now: now})
	if !r.Authenticated || r.Usable != 2 || len(r.Problems) != 1 || r.Problems[0].Code != Mismatch || r.Problems[0].Record != Record(3, 1, 1, p.nextLeaf).String() {
		t.Errorf("got %+v", r)
	}
}

// NAME-6, NAME-4: the DANE-TA name matcher (RFC 7672 §3.2.3; RFC 6125 §6.4).
func TestMatchName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		presented, ref string
		want           bool
	}{
		{"mx.example.com", "mx.example.com", true},
		{"MX.Example.COM", "mx.example.com.", true},
		{"mx.example.com.", "MX.EXAMPLE.COM", true},
		{"*.example.com", "mx.example.com", true},
		{"*.Example.com", "MX.example.COM", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.mx.example.com", false},
		{"*.example.com", ".example.com", false},
		{"mx*.example.com", "mx1.example.com", false},
		{"*mx.example.com", "amx.example.com", false},
		{"a.*.example.com", "a.b.example.com", false},
		{"*.*.example.com", "a.b.example.com", false},
		{"*", "com", false},
		{"*.", "a.", false},
		{"*.example.com", "*.example.com", false},
		{"mx.example.com", "mx.example.net", false},
		{"", "", false},
		{"mx.example.com", "", false},
	} {
		if got := MatchName(tc.presented, tc.ref); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v, want %v", tc.presented, tc.ref, got, tc.want)
		}
	}
}
