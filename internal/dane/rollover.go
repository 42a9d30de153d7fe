package dane

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strings"
)

// Recommend returns the records to publish for a chain (leaf first): the
// "3 1 1" of the server key first (RFC 7672 §3.1.1; RFC 7671 §5.1), then,
// when the chain contains the certificate that issued the leaf, a "2 0 1"
// of that CA certificate: the recommended pair (DANE-REC-4), where a new
// server key issued by the same CA is still covered. Selector Cert(0) fixes
// the trust anchor's constraints (RFC 7672 §3.1.2 discourages "2 1 x").
// With DANE-TA the server must keep sending that CA certificate
// (RFC 7672 §3.1.2).
func Recommend(chain []*x509.Certificate) []TLSA {
	if len(chain) == 0 || chain[0] == nil {
		return nil
	}
	leaf := chain[0]
	out := []TLSA{Record(DANEEE, SPKI, SHA256, leaf)}
	if ca := issuerOf(leaf, chain[1:]); ca != nil {
		out = append(out, Record(DANETA, Cert, SHA256, ca))
	}
	return out
}

// issuerOf returns the CA certificate among cands that signed c.
func issuerOf(c *x509.Certificate, cands []*x509.Certificate) *x509.Certificate {
	for _, ca := range cands {
		if ca == nil || bytes.Equal(ca.Raw, c.Raw) || !bytes.Equal(c.RawIssuer, ca.RawSubject) {
			continue
		}
		if c.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// matchesChain reports whether a usable record matches the chain by data
// alone (no path, date or name checks): DANE-EE the leaf; DANE-TA a CA
// certificate the server sent, or for a Full(0) record an anchor that
// signed one of the presented certificates.
func (v *verifier) matchesChain(t TLSA) bool {
	if t.Usage == DANEEE {
		return v.certs[0].matches(t)
	}
	for i := 1; i < len(v.certs); i++ {
		if v.certs[i].matches(t) && !v.isLeafCopy(i) {
			return true
		}
	}
	if t.MatchingType == Full {
		_, j := v.recordAnchor(t)
		return j >= 0
	}
	return false
}

// Stale returns the usable records that match nothing in the current chain
// (by data alone): keys pre-published for the future or left over from the
// past. They are fine only alongside a record that matches the current
// chain with the same parameters (RFC 7671 §8.1, §8.4; RFC 7672 §4).
func Stale(records []TLSA, chain []*x509.Certificate) []TLSA {
	if len(chain) == 0 || chain[0] == nil {
		var out []TLSA
		for _, t := range records {
			if t.usable() {
				out = append(out, t)
			}
		}
		return out
	}
	v := newVerifier(chain, VerifyOptions{})
	var out []TLSA
	for _, t := range records {
		if t.usable() && !v.matchesChain(t) {
			out = append(out, t)
		}
	}
	return out
}

// Rollover is the verdict of CheckRollover.
type Rollover struct {
	Ready  bool   `json:"ready"`
	Scheme string `json:"scheme,omitempty"` // e.g. "current + next key (3 1 1 + 3 1 1)"
	Detail string `json:"detail"`
}

// CheckRollover says whether the TLSA RRset lets the server change its
// certificate without a DNS change at the same moment (RFC 7672 §4;
// RFC 7671 §8): among the records senders use (after digest agility), one
// must match the current chain, and besides it either
//
//   - a pre-published next key: a record that matches nothing in the
//     current chain, with the same parameters as a record that does
//     (RFC 7671 §8.1, §8.4: a parameter combination that matches only a
//     future chain is not safe, RFC 7671 §8.2), or
//   - a DANE-EE and a DANE-TA record that both match the current chain
//     (a new key from the same CA stays covered by the TA record).
//
// Detail explains what is missing in plain words.
func CheckRollover(records []TLSA, chain []*x509.Certificate) Rollover {
	used, ignored := Effective(records)
	if len(used) == 0 {
		return Rollover{Detail: "there is no usable TLSA record, so there is nothing to roll over"}
	}
	if len(chain) == 0 || chain[0] == nil {
		return Rollover{Detail: "there is no certificate chain to compare the TLSA records with"}
	}
	v := newVerifier(chain, VerifyOptions{})
	var current, other []TLSA
	for _, t := range used {
		if v.matchesChain(t) {
			current = append(current, t)
		} else {
			other = append(other, t)
		}
	}
	if len(current) == 0 {
		for _, t := range ignored {
			if v.matchesChain(t) {
				return Rollover{Detail: fmt.Sprintf("only %s matches the current certificate chain, and %s; first publish a record of the current chain with the stronger digest (RFC 7671 §8.3, §9)", t.Params(), agilityReason(t, used))}
			}
		}
		return Rollover{Detail: "no usable TLSA record matches the current certificate chain; publish a record for the certificate in use first (RFC 7672 §3.2, §4)"}
	}
	params := map[string]TLSA{}
	var ee, ta *TLSA
	for i, t := range current {
		params[t.Params()] = t
		switch {
		case t.Usage == DANEEE && ee == nil:
			ee = &current[i]
		case t.Usage == DANETA && ta == nil:
			ta = &current[i]
		}
	}
	var next, orphans []TLSA
	for _, t := range other {
		if _, ok := params[t.Params()]; ok {
			next = append(next, t)
		} else {
			orphans = append(orphans, t)
		}
	}
	var notes []string
	if len(orphans) > 0 {
		var list []string
		for _, t := range orphans {
			list = append(list, t.Short())
		}
		notes = append(notes, fmt.Sprintf("%s matches no current certificate and no record with the same parameters does, so senders that use only those parameters fail now; publish every parameter combination for the current chain too (RFC 7671 §8.2, §8.4)", strings.Join(list, ", ")))
	}
	var r Rollover
	switch {
	case len(next) > 0:
		r = Rollover{Ready: true, Scheme: fmt.Sprintf("current + next key (%s + %s)", params[next[0].Params()].Params(), next[0].Params()),
			Detail: fmt.Sprintf("%s matches the current chain and %s is published for the next key; after switching keys, remove the old record (RFC 7671 §8.1)", params[next[0].Params()].Short(), next[0].Short())}
	case ee != nil && ta != nil:
		r = Rollover{Ready: true, Scheme: fmt.Sprintf("end entity + trust anchor (%s + %s)", ee.Params(), ta.Params()),
			Detail: fmt.Sprintf("%s matches the server key and %s its issuing CA, so a new key from the same CA stays covered while the 3 x x record is updated (RFC 7672 §4)", ee.Short(), ta.Short())}
	case ee != nil:
		r = Rollover{Detail: fmt.Sprintf("only the current server key is published (%s): a new key needs its own TLSA record at least two TTLs before it is deployed. Pre-publish the next key's %s record, or add a %s record for the issuing CA (RFC 7671 §8.1)", ee.Params(), ee.Params(), "2 0 1")}
	default:
		r = Rollover{Detail: fmt.Sprintf("only the issuing CA is published (%s): a new server key from the same CA is covered, but a change of CA is not. Add a 3 1 1 record for the server key, or pre-publish the next CA's record (RFC 7671 §8.1, §8.2)", ta.Params())}
	}
	if len(notes) > 0 {
		r.Detail += ". Also: " + strings.Join(notes, "; ")
	}
	return r
}
