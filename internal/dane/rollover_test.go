package dane

import (
	"crypto/x509"
	"strings"
	"testing"
)

// DANE-REC-4: Recommend gives "3 1 1" of the leaf, then "2 0 1" of the
// issuing CA when the chain has it; the result authenticates the chain.
func TestRecommend(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  []TLSA
	}{
		{"leaf and issuer", []*x509.Certificate{p.leafEC, p.inter, p.root}, []TLSA{Record(3, 1, 1, p.leafEC), Record(2, 0, 1, p.inter)}},
		{"RSA leaf", []*x509.Certificate{p.leafRSA, p.inter}, []TLSA{Record(3, 1, 1, p.leafRSA), Record(2, 0, 1, p.inter)}},
		{"issuer out of order", []*x509.Certificate{p.leafEC, p.root, p.inter}, []TLSA{Record(3, 1, 1, p.leafEC), Record(2, 0, 1, p.inter)}},
		{"no issuer sent", []*x509.Certificate{p.leafEC}, []TLSA{Record(3, 1, 1, p.leafEC)}},
		{"wrong intermediate sent", []*x509.Certificate{p.leafEC, p.oldInter}, []TLSA{Record(3, 1, 1, p.leafEC)}},
		{"self-signed", []*x509.Certificate{p.selfSigned}, []TLSA{Record(3, 1, 1, p.selfSigned)}},
		{"empty", nil, nil},
		{"nil leaf", []*x509.Certificate{nil, p.inter}, nil},
	} {
		got := Recommend(tc.chain)
		if !equalSets(got, tc.want) {
			t.Errorf("DANE-REC-4 %s: Recommend = %v, want %v", tc.name, got, tc.want)
			continue
		}
		if len(got) == 0 || tc.chain[0] == p.selfSigned {
			continue
		}
		for _, rec := range got {
			r := Verify([]TLSA{rec}, tc.chain, VerifyOptions{Names: []string{"mx.example.com"}, Now: now})
			if !r.Authenticated {
				t.Errorf("DANE-REC-4 %s: recommended %s does not authenticate: %+v", tc.name, rec.Short(), r.Problems)
			}
		}
	}
}

// DANE-REC-5, MISC-40: rollover readiness (RFC 7671 §8; RFC 7672 §4).
func TestCheckRollover(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	ecChain := []*x509.Certificate{p.leafEC, p.inter}
	for _, tc := range []struct {
		id      string
		records []TLSA
		chain   []*x509.Certificate
		ready   bool
		scheme  string
		detail  string
	}{
		{"DANE-REC-5 current + next", []TLSA{Record(3, 1, 1, p.leafEC), Record(3, 1, 1, p.nextLeaf)}, ecChain, true, "current + next key (3 1 1 + 3 1 1)", "remove the old record"},
		{"DANE-REC-5 next first", []TLSA{Record(3, 1, 1, p.nextLeaf), Record(3, 1, 1, p.leafEC)}, ecChain, true, "current + next key (3 1 1 + 3 1 1)", ""},
		{"DANE-REC-5 EE + TA", []TLSA{Record(3, 1, 1, p.leafEC), Record(2, 0, 1, p.inter)}, ecChain, true, "end entity + trust anchor (3 1 1 + 2 0 1)", "issuing CA"},
		{"DANE-REC-5 EE + TA 2 0 1", []TLSA{Record(2, 0, 1, p.inter), Record(3, 1, 1, p.leafEC)}, ecChain, true, "end entity + trust anchor (3 1 1 + 2 0 1)", ""},
		{"MISC-40 current only", []TLSA{Record(3, 1, 1, p.leafEC)}, ecChain, false, "", "Pre-publish the next key"},
		{"MISC-40 TA only", []TLSA{Record(2, 0, 1, p.inter)}, ecChain, false, "", "change of CA is not"},
		{"MISC-40 nothing current", []TLSA{Record(3, 1, 1, p.nextLeaf)}, ecChain, false, "", "no usable TLSA record matches the current certificate chain"},
		{"DANE-REC-5 next only in stronger digest", []TLSA{Record(3, 1, 1, p.leafEC), Record(3, 1, 2, p.nextLeaf)}, ecChain, false, "", "stronger digest"},
		{"DANE-REC-5 future CA with other parameters", []TLSA{Record(3, 1, 1, p.leafEC), Record(2, 0, 1, p.oldInter)}, ecChain, false, "", "RFC 7671 §8.2"},
		{"DANE-REC-5 ready, with an orphan", []TLSA{Record(3, 1, 1, p.leafEC), Record(3, 1, 1, p.nextLeaf), Record(2, 0, 1, p.oldInter)}, ecChain, true, "current + next key (3 1 1 + 3 1 1)", "Also:"},
		{"RSA chain", []TLSA{Record(3, 1, 1, p.leafEC), Record(2, 0, 1, p.inter)}, []*x509.Certificate{p.leafRSA, p.inter}, false, "", "only the issuing CA"},
		{"unusable only", []TLSA{Record(1, 1, 1, p.leafEC)}, ecChain, false, "", "no usable TLSA record"},
		{"no chain", []TLSA{Record(3, 1, 1, p.leafEC)}, nil, false, "", "no certificate chain"},
	} {
		got := CheckRollover(tc.records, tc.chain)
		if got.Ready != tc.ready || got.Scheme != tc.scheme || !strings.Contains(got.Detail, tc.detail) || got.Detail == "" {
			t.Errorf("%s: CheckRollover = %+v, want ready %v, scheme %q, detail with %q", tc.id, got, tc.ready, tc.scheme, tc.detail)
		}
	}
}

// DANE-REC-5: Stale lists usable records that match nothing in the chain.
func TestStale(t *testing.T) {
	t.Parallel()
	p := testPKI(t)
	ecChain := []*x509.Certificate{p.leafEC, p.inter}
	records := []TLSA{
		Record(3, 1, 1, p.leafEC),
		Record(3, 1, 1, p.nextLeaf), // stale: next key
		Record(2, 0, 1, p.inter),
		Record(2, 0, 1, p.root),    // stale: not sent
		Record(2, 0, 0, p.root),    // the record supplies the root, which signed inter
		Record(1, 1, 1, p.leafRSA), // unusable: not listed
		Record(3, 1, 1, p.inter),   // stale: DANE-EE of a CA
	}
	want := []TLSA{records[1], records[3], records[6]}
	if got := Stale(records, ecChain); !equalSets(got, want) {
		t.Errorf("Stale = %v, want %v", got, want)
	}
	if got := Stale(records, nil); len(got) != 6 {
		t.Errorf("Stale without a chain = %d records, want all 6 usable", len(got))
	}
}
