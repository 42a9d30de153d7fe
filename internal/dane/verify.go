package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Code classifies why a record did not authenticate a chain.
type Code string

// Problem codes.
const (
	// NoCertificate: the server presented no certificate.
	NoCertificate Code = "no-certificate"
	// NoUsableRecords: the RRset has no usable record; senders then
	// require TLS but do not authenticate the server (RFC 7672 §2.2).
	NoUsableRecords Code = "no-usable-records"
	// MalformedRecord: wrong digest length or unparsable Full data
	// (Usability Malformed).
	MalformedRecord Code = "malformed-record"
	// UnusableRecord: PKIX usage or undefined parameters (Usability
	// UnusablePKIX or UnusableParams).
	UnusableRecord Code = "unusable-record"
	// Mismatch: a DANE-EE record does not match the server certificate.
	Mismatch Code = "mismatch"
	// TANotInChain: a DANE-TA record matches no CA certificate the server
	// sent (RFC 7672 §3.1.2; RFC 7671 §5.2.2).
	TANotInChain Code = "ta-not-in-chain"
	// TAIsLeaf: a DANE-TA record matches the server certificate itself,
	// which is not a trust anchor; such a record needs usage 3.
	TAIsLeaf Code = "ta-is-leaf"
	// TAPathInvalid: the path from the server certificate to the matched
	// trust anchor does not verify (signatures, validity periods, CA
	// constraints).
	TAPathInvalid Code = "ta-path-invalid"
	// NameMismatch: the DANE-TA chain verifies but the server certificate
	// names none of the reference identifiers (RFC 7672 §3.2.2).
	NameMismatch Code = "name-mismatch"
	// WeakerDigestOnly: the chain matches only a record that digest
	// algorithm agility ignores (RFC 7671 §9).
	WeakerDigestOnly Code = "weaker-digest-only"
)

// Problem is one reason a record did not authenticate the chain.
type Problem struct {
	Code   Code   `json:"code"`
	Record string `json:"record,omitempty"` // the TLSA record in presentation form; empty for the RRset as a whole
	Detail string `json:"detail"`
}

// VerifyOptions are the inputs of Verify besides records and chain.
type VerifyOptions struct {
	// Names are the reference identifiers for DANE-TA name checks
	// (RFC 7672 §3.2.2): the TLSA base domain first and, when the MX host
	// came from a secure MX lookup, the next-hop domain and its
	// CNAME-expanded form. Names are compared case-insensitively, ignoring
	// one trailing dot; they must be in A-label form. With no names no
	// DANE-TA record can authenticate. DANE-EE ignores names.
	Names []string
	// Now is the time for DANE-TA path validity; zero means time.Now().
	// DANE-EE ignores validity dates (RFC 7672 §3.1.1).
	Now time.Time
}

// Result is the outcome of Verify.
type Result struct {
	// Authenticated: at least one usable record (after digest agility)
	// authenticates the chain.
	Authenticated bool `json:"authenticated"`
	// Matched is the first record, in RRset order, that did.
	Matched *TLSA `json:"matched,omitempty"`
	// MatchedCert is the index in the chain of the certificate Matched
	// matched (0 = the server certificate); -1 when nothing matched or when
	// the trust anchor came from the record itself (AnchorFromRecord).
	MatchedCert int `json:"matched_cert"`
	// MatchedName is the reference identifier a DANE-TA chain matched.
	MatchedName string `json:"matched_name,omitempty"`
	// AnchorFromRecord: the trust anchor was not in the chain but supplied
	// in full by a "2 0 0" or "2 1 0" record (RFC 7671 §5.2.2, §5.2.3).
	// Not all senders can do this; servers should send the TA certificate
	// (DANE-REC-9).
	AnchorFromRecord bool `json:"anchor_from_record,omitempty"`
	// Usable is the number of usable records in the set, before agility.
	Usable int `json:"usable"`
	// Problems says why records did not authenticate the chain, one entry
	// per record (and NoUsableRecords / NoCertificate for the whole set).
	// It can be non-empty when Authenticated: a pre-published next key, for
	// example, does not match yet. Callers judge by Authenticated.
	Problems []Problem `json:"problems,omitempty"`
}

// Has reports whether r has a problem with code c.
func (r Result) Has(c Code) bool {
	return slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Code == c })
}

// maxChain is how many presented certificates are considered; further ones
// are ignored. Postfix's default verification depth is 9
// (smtp_tls_scert_verifydepth), so longer chains fail there anyway.
const maxChain = 16

// Verify checks a chain presented by an SMTP server (leaf first, as sent)
// against the TLSA RRset records, which must come from a secure lookup
// (RFC 7672 §2.2). Unusable records are reported and skipped; digest
// agility (RFC 7671 §9) is applied; then every remaining record is tried:
//
//   - DANE-EE(3) is compared with the server certificate only; a match
//     authenticates regardless of names, issuer and dates (RFC 7672
//     §3.1.1, §3.2.1; RFC 7671 §5.1).
//   - DANE-TA(2) must match a CA certificate the server sent (RFC 7672
//     §3.1.2); the path from the server certificate to it must verify at
//     opt.Now (signatures, validity periods, CA and path-length and name
//     constraints, server-auth extended key usage where present), and the
//     server certificate must carry one of opt.Names (RFC 7672 §3.2.2,
//     §3.2.3). A "2 0 0" or "2 1 0" record that matches no presented
//     certificate is used as the anchor itself when it signed one
//     (RFC 7671 §5.2.2, §5.2.3).
//
// There are no Certificate Transparency, OCSP or revocation checks
// (RFC 7671 §4.2; RFC 7672 §4). Verify never returns an error; everything is in the Result.
func Verify(records []TLSA, chain []*x509.Certificate, opt VerifyOptions) Result {
	r := Result{MatchedCert: -1}
	for _, t := range records {
		switch u, why := t.Usability(); u {
		case Usable:
		case Malformed:
			r.Problems = append(r.Problems, Problem{MalformedRecord, t.String(), why})
		default:
			r.Problems = append(r.Problems, Problem{UnusableRecord, t.String(), why})
		}
	}
	used, ignored := Effective(records)
	r.Usable = len(used) + len(ignored)
	if r.Usable == 0 {
		// RFC 7672 §2.2, §3.2.
		r.Problems = append(r.Problems, Problem{Code: NoUsableRecords, Detail: fmt.Sprintf("none of the %d TLSA records is usable for SMTP: senders require TLS but cannot authenticate the server (RFC 7672 §2.2)", len(records))})
		return r
	}
	if len(chain) == 0 || chain[0] == nil {
		r.Problems = append(r.Problems, Problem{Code: NoCertificate, Detail: "the server presented no certificate"})
		return r
	}
	v := newVerifier(chain, opt)
	for _, t := range used {
		o := v.eval(t)
		if !o.ok {
			r.Problems = append(r.Problems, o.problem)
			continue
		}
		if !r.Authenticated {
			m := t.clone()
			r.Authenticated, r.Matched, r.MatchedCert, r.MatchedName, r.AnchorFromRecord = true, &m, o.cert, o.name, o.fromRecord
		}
	}
	for _, t := range ignored {
		why := agilityReason(t, used)
		o := v.eval(t)
		switch {
		case o.ok && !r.Authenticated:
			r.Problems = append(r.Problems, Problem{WeakerDigestOnly, t.String(), fmt.Sprintf("%s matches the certificate, but %s; publish the stronger digest of the current certificate too, or remove the stronger records that match nothing (RFC 7671 §8.3, §9)", t.Short(), why)})
		case !o.ok:
			o.problem.Detail += "; besides, " + why
			r.Problems = append(r.Problems, o.problem)
		}
	}
	return r
}

// agilityReason explains why digest agility ignores t.
func agilityReason(t TLSA, used []TLSA) string {
	for _, u := range used {
		if u.Usage == t.Usage && u.Selector == t.Selector && digestRank(u.MatchingType) > digestRank(t.MatchingType) {
			return fmt.Sprintf("senders that support %s ignore %s records because %s records are published too (digest algorithm agility)", nameOf(matchingNames, u.MatchingType), t.Params(), u.Params())
		}
	}
	return "digest algorithm agility ignores it"
}

// presented is one certificate of the chain with its digests.
type presented struct {
	c *x509.Certificate
	d [2][3][]byte // [selector][matching type]
}

func (p *presented) matches(t TLSA) bool {
	if p.c == nil || len(t.Data) == 0 || t.Selector > SPKI || t.MatchingType > SHA512 {
		return false
	}
	return bytes.Equal(p.d[t.Selector][t.MatchingType], t.Data)
}

// RFC 6698 §2.1.2–§2.1.4.
func newPresented(c *x509.Certificate) presented {
	p := presented{c: c}
	if c == nil {
		return p
	}
	for sel, in := range [2][]byte{c.Raw, c.RawSubjectPublicKeyInfo} {
		s256, s512 := sha256.Sum256(in), sha512.Sum512(in)
		p.d[sel] = [3][]byte{in, s256[:], s512[:]}
	}
	return p
}

type verifier struct {
	certs []presented // chain[:maxChain]; certs[0] is the leaf and not nil
	inter *x509.CertPool
	names []string
	now   time.Time

	paths    map[int]error // path check to certs[i] as the anchor
	nameDone bool
	name     string // the matched reference identifier
	nameWhy  string // why none matched
}

func newVerifier(chain []*x509.Certificate, opt VerifyOptions) *verifier {
	if len(chain) > maxChain {
		chain = chain[:maxChain]
	}
	v := &verifier{inter: x509.NewCertPool(), now: opt.Now, paths: map[int]error{}}
	if v.now.IsZero() {
		v.now = time.Now()
	}
	for i, c := range chain {
		v.certs = append(v.certs, newPresented(c))
		if i > 0 && c != nil {
			v.inter.AddCert(c)
		}
	}
	for _, n := range opt.Names {
		if n = normalizeName(n); n != "" {
			v.names = append(v.names, n)
		}
	}
	return v
}

func (v *verifier) leaf() *x509.Certificate { return v.certs[0].c }

// outcome is the result of trying one record.
type outcome struct {
	ok         bool
	cert       int // index of the matched certificate, -1 for an anchor from the record
	name       string
	fromRecord bool
	problem    Problem
}

func (v *verifier) eval(t TLSA) outcome {
	if t.Usage == DANEEE {
		return v.evalEE(t)
	}
	return v.evalTA(t)
}

// evalEE: RFC 7672 §3.1.1, §3.2.1; RFC 7671 §5.1. Only the leaf counts;
// names, issuer and validity dates are not checked.
func (v *verifier) evalEE(t TLSA) outcome {
	if v.certs[0].matches(t) {
		return outcome{ok: true, cert: 0}
	}
	fail := func(format string, args ...any) outcome {
		return outcome{cert: -1, problem: Problem{Mismatch, t.String(), fmt.Sprintf(format, args...)}}
	}
	for i := 1; i < len(v.certs); i++ {
		if v.certs[i].matches(t) && !v.isLeafCopy(i) {
			return fail("%s matches the CA certificate %s (position %d in the chain), but DANE-EE (usage 3) records are compared with the server certificate only (RFC 7672 §3.1.1); use usage 2 (DANE-TA) for a CA certificate", t.Short(), describe(v.certs[i].c), i)
		}
	}
	if t.MatchingType == Full {
		return fail("%s does not match the server certificate %s: its %s differs (RFC 7672 §3.2)", t.Short(), describe(v.leaf()), selectedThing(t.Selector))
	}
	return fail("%s does not match the server certificate %s, whose record with these parameters is %s (RFC 7672 §3.2)", t.Short(), describe(v.leaf()), Record(t.Usage, t.Selector, t.MatchingType, v.leaf()).String())
}

// isLeafCopy reports whether certs[i] is the leaf sent again.
func (v *verifier) isLeafCopy(i int) bool {
	return bytes.Equal(v.certs[i].c.Raw, v.leaf().Raw)
}

// evalTA: RFC 7672 §3.1.2, §3.2.2; RFC 7671 §5.2.
func (v *verifier) evalTA(t TLSA) outcome {
	var pathErr error
	pathIdx, nameFailed, matchedCA := -1, false, false
	for i := 1; i < len(v.certs); i++ {
		if !v.certs[i].matches(t) || v.isLeafCopy(i) {
			continue
		}
		matchedCA = true
		if err := v.pathTo(i); err != nil {
			if pathErr == nil {
				pathErr, pathIdx = err, i
			}
			continue
		}
		if name, ok := v.nameCheck(); ok {
			return outcome{ok: true, cert: i, name: name}
		}
		nameFailed = true
	}
	fail := func(c Code, format string, args ...any) outcome {
		return outcome{cert: -1, problem: Problem{c, t.String(), fmt.Sprintf(format, args...)}}
	}
	if !matchedCA && t.MatchingType == Full {
		if o, anchored := v.evalAnchorFromRecord(t); anchored {
			return o
		}
	}
	switch {
	case nameFailed:
		return fail(NameMismatch, "%s matches the CA certificate the server sent and the chain verifies, but %s (RFC 7672 §3.2.2, §3.2.3)", t.Short(), v.nameWhy)
	case pathErr != nil:
		return fail(TAPathInvalid, "%s matches the CA certificate %s (position %d in the chain), but the chain from the server certificate to it does not verify: %s (RFC 7672 §3.1.2)", t.Short(), describe(v.certs[pathIdx].c), pathIdx, explainPathError(pathErr, v.now))
	case v.certs[0].matches(t):
		return fail(TAIsLeaf, "%s matches the server certificate itself, not a CA certificate; DANE-TA (usage 2) names the issuing CA, so publish this association with usage 3 (DANE-EE) instead (RFC 7671 §5.1, §5.2)", t.Short())
	}
	return fail(TANotInChain, "%s matches no CA certificate the server sent; the server must send the trust-anchor certificate in its chain, even a self-signed root, or the domain should publish a 3 1 1 record for the server key instead (RFC 7672 §3.1.2; RFC 7671 §5.2.2)", t.Short())
}

// evalAnchorFromRecord handles a "2 0 0" or "2 1 0" record that matches no
// presented certificate: the record supplies the anchor itself. For 2 0 0
// clients MUST be able to do this (RFC 7671 §5.2.2); for 2 1 0 it is
// RECOMMENDED to accept a chain certificate signed by the key (RFC 7671
// §5.2.3), and we do. anchored is false when the anchor signed no
// presented certificate.
func (v *verifier) evalAnchorFromRecord(t TLSA) (o outcome, anchored bool) {
	ta, j := v.recordAnchor(t)
	if j < 0 {
		return outcome{}, false
	}
	fail := func(c Code, format string, args ...any) (outcome, bool) {
		return outcome{cert: -1, problem: Problem{c, t.String(), fmt.Sprintf(format, args...)}}, true
	}
	var err error
	if ta != nil {
		err = v.verifyTo(ta)
	} else {
		// Bare key: the certificate it signed stands in for the anchor;
		// it must be valid too (RFC 7671 §5.2.3: "has not expired").
		err = v.pathTo(j)
	}
	if err != nil {
		return fail(TAPathInvalid, "%s supplies the trust anchor itself (the server did not send it), and the chain from the server certificate to it does not verify: %s (RFC 7671 §5.2.2, §5.2.3)", t.Short(), explainPathError(err, v.now))
	}
	name, ok := v.nameCheck()
	if !ok {
		return fail(NameMismatch, "%s supplies the trust anchor itself and the chain verifies, but %s (RFC 7672 §3.2.2, §3.2.3)", t.Short(), v.nameWhy)
	}
	return outcome{ok: true, cert: -1, name: name, fromRecord: true}, true
}

// recordAnchor returns, for a Full(0) DANE-TA record, the anchor
// certificate it holds (nil for a bare key) and the index of a presented
// certificate the anchor signed, or -1.
func (v *verifier) recordAnchor(t TLSA) (*x509.Certificate, int) {
	if v.certs[0].matches(t) {
		// The server certificate itself is no trust anchor (TAIsLeaf),
		// whether it comes from the chain or from the record.
		return nil, -1
	}
	var ta *x509.Certificate
	var key any
	switch t.Selector {
	case Cert:
		c, err := x509.ParseCertificate(t.Data)
		if err != nil {
			return nil, -1
		}
		ta, key = c, c.PublicKey
	case SPKI:
		k, err := x509.ParsePKIXPublicKey(t.Data)
		if err != nil {
			return nil, -1
		}
		key = k
	default:
		return nil, -1
	}
	for j, p := range v.certs {
		if p.c == nil || (j > 0 && v.isLeafCopy(j)) {
			continue
		}
		if ta != nil && !bytes.Equal(p.c.RawIssuer, ta.RawSubject) {
			continue
		}
		if signedBy(p.c, key) {
			return ta, j
		}
	}
	return nil, -1
}

// signedBy reports whether c's signature verifies with key. SHA-1
// signatures are refused, as crypto/x509 path validation does.
func signedBy(c *x509.Certificate, key any) bool {
	switch c.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA, x509.UnknownSignatureAlgorithm:
		return false
	}
	k := &x509.Certificate{PublicKey: key}
	return k.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// pathTo verifies the path from the leaf to certs[i] as the trust anchor,
// memoized.
func (v *verifier) pathTo(i int) error {
	if err, done := v.paths[i]; done {
		return err
	}
	err := v.verifyTo(v.certs[i].c)
	v.paths[i] = err
	return err
}

// verifyTo verifies the path from the leaf to ta, which is trusted without
// its own issuer (RFC 7671 §5.2.2; RFC 5280 §6.1): every certificate,
// ta included, must be within its validity period at now, each must be
// signed by the next, intermediates must be CAs, and path-length and name
// constraints apply, including the anchor's own (RFC 7672 §3.1.2 "SHOULD
// apply any relevant constraints from the trust anchor certificate").
// Names are checked separately.
func (v *verifier) verifyTo(ta *x509.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	_, err := v.leaf().Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: v.inter,
		CurrentTime:   v.now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// explainPathError turns a crypto/x509 error into plain words.
func explainPathError(err error, now time.Time) string {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Cert != nil {
		c := describe(inv.Cert)
		switch inv.Reason {
		case x509.Expired:
			if now.Before(inv.Cert.NotBefore) {
				return fmt.Sprintf("the certificate %s is not valid before %s", c, inv.Cert.NotBefore.UTC().Format(time.RFC3339))
			}
			return fmt.Sprintf("the certificate %s expired on %s", c, inv.Cert.NotAfter.UTC().Format(time.DateOnly))
		case x509.NotAuthorizedToSign:
			return fmt.Sprintf("the certificate %s is not a CA certificate but issues another one", c)
		case x509.TooManyIntermediates:
			return fmt.Sprintf("the path is longer than the certificate %s allows (path length constraint)", c)
		case x509.CANotAuthorizedForThisName, x509.CANotAuthorizedForExtKeyUsage:
			return fmt.Sprintf("the certificate %s is outside the constraints of its issuer: %v", c, err)
		case x509.IncompatibleUsage:
			return fmt.Sprintf("the certificate %s is not allowed for TLS server authentication (extended key usage)", c)
		}
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return "the server certificate does not chain to it: an intermediate certificate is missing, or a signature does not verify"
	}
	var crit x509.UnhandledCriticalExtension
	if errors.As(err, &crit) {
		return "a certificate has a critical extension that is not understood"
	}
	return err.Error()
}

// nameCheck matches the leaf against the reference identifiers, memoized:
// DNS-IDs (subjectAltName dNSName) only; the CN only when there is no
// DNS-ID at all (RFC 7672 §3.2.3).
func (v *verifier) nameCheck() (string, bool) {
	if v.nameDone {
		return v.name, v.name != ""
	}
	v.nameDone = true
	leaf := v.leaf()
	presented, fromCN := leaf.DNSNames, false
	if len(presented) == 0 && leaf.Subject.CommonName != "" {
		presented, fromCN = []string{leaf.Subject.CommonName}, true
	}
	for _, ref := range v.names {
		for _, p := range presented {
			if MatchName(p, ref) {
				v.name = ref
				return ref, true
			}
		}
	}
	switch {
	case len(v.names) == 0:
		v.nameWhy = "no reference names were given to check the server certificate against"
	case len(presented) == 0:
		v.nameWhy = fmt.Sprintf("the server certificate has neither DNS names nor a CN, so it cannot match %s", quoteList(v.names))
	case fromCN:
		v.nameWhy = fmt.Sprintf("the server certificate has no DNS names and its CN %q matches none of %s", presented[0], quoteList(v.names))
	default:
		v.nameWhy = fmt.Sprintf("the server certificate is for %s, which matches none of %s", quoteList(presented), quoteList(v.names))
	}
	return "", false
}

// MatchName reports whether the presented identifier (a DNS-ID or CN-ID)
// matches the reference identifier ref (RFC 7672 §3.2.3; RFC 6125 §6.4):
// case-insensitive ASCII comparison ignoring one trailing dot, and a
// wildcard only as the entire left-most label, matching exactly one
// non-empty label (multi-label matching, which RFC 7672 leaves to local
// policy, is not allowed). A reference identifier containing "*" never
// matches.
func MatchName(presented, ref string) bool {
	p, r := normalizeName(presented), normalizeName(ref)
	if p == "" || r == "" || strings.Contains(r, "*") {
		return false
	}
	if !strings.HasPrefix(p, "*.") {
		return p == r
	}
	rest := p[1:] // ".example.com"
	if len(rest) < 2 || strings.Contains(rest, "*") {
		return false
	}
	i := strings.IndexByte(r, '.')
	return i > 0 && r[i:] == rest
}

// normalizeName lower-cases ASCII letters and drops one trailing dot
// (RFC 6125 §6.4.1).
func normalizeName(s string) string {
	s = strings.TrimSuffix(s, ".")
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// describe names a certificate for messages.
func describe(c *x509.Certificate) string {
	if c == nil {
		return "(none)"
	}
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	if len(c.DNSNames) > 0 {
		return "for " + quoteList(c.DNSNames)
	}
	if s := c.Subject.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	return "with an empty subject"
}

func quoteList(names []string) string {
	const max = 5
	q := make([]string, 0, max+1)
	for i, n := range names {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(names)-max))
			break
		}
		q = append(q, fmt.Sprintf("%q", n))
	}
	return strings.Join(q, ", ")
}
