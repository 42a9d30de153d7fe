// Package webpki checks a presented certificate chain the way MTA-STS
// senders do (RFC 8461 §3.3 for the policy host, §4.2 for MX hosts): the
// chain must lead to a trusted root, every certificate must be inside its
// validity period, and the leaf must carry a subjectAltName DNS-ID for the
// host (RFC 6125 §6.4: CN ignored, a wildcard only as the whole left-most
// label). Unlike crypto/x509 it reports every problem at once, each
// classified, so a report can say "expired and for the wrong name".
package webpki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Code classifies a certificate problem.
type Code string

// Problem codes.
const (
	NoCertificate   Code = "no-certificate"
	Expired         Code = "expired"
	NotYetValid     Code = "not-yet-valid"
	SelfSigned      Code = "self-signed"
	IncompleteChain Code = "incomplete-chain" // the server sends only its own certificate
	Untrusted       Code = "untrusted"        // chains to a root that is not trusted
	Invalid         Code = "invalid"          // other chain errors (signature, constraints, usage)
	NameMismatch    Code = "name-mismatch"
	ExpiresSoon     Code = "expires-soon" // not a failure: a warning horizon
)

// SoonWindow is how far ahead ExpiresSoon looks.
const SoonWindow = 14 * 24 * time.Hour

// Problem is one finding about a chain.
type Problem struct {
	Code   Code   `json:"code"`
	Detail string `json:"detail"`
}

// Cert describes one presented certificate, as evidence.
type Cert struct {
	Subject    string    `json:"subject"`
	Issuer     string    `json:"issuer"`
	DNSNames   []string  `json:"dns_names,omitempty"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	IsCA       bool      `json:"is_ca,omitempty"`
	SelfSigned bool      `json:"self_signed,omitempty"`
	KeyType    string    `json:"key_type"`
	SHA256     string    `json:"sha256"`      // of the whole certificate (DER)
	SPKISHA256 string    `json:"spki_sha256"` // of the SubjectPublicKeyInfo, as in TLSA 3 1 1
	Size       int       `json:"size"`        // bytes of DER
}

// OpenSSLMaxCertList is the largest Certificate handshake message OpenSSL
// accepts from a peer by default (SSL_MAX_CERT_LIST_DEFAULT, 100 KiB).
// Postfix and Python's ssl module (postfix-mta-sts-resolver) keep that
// default; Go's crypto/tls accepts 256 KiB.
const OpenSSLMaxCertList = 100 * 1024

// CertificateMessageSize returns the size of the body of the TLS
// Certificate handshake message that carries chain: a 3-byte list length
// and a 3-byte length before each certificate (RFC 5246 §7.4.2); TLS 1.3
// adds a 1-byte request context and 2 bytes of extensions per certificate
// (RFC 8446 §4.4.2). Stapled OCSP responses and SCTs, which the evidence
// does not keep, only add to it, so this is a lower bound.
func CertificateMessageSize(chain []Cert, version string) int {
	n := 3
	for _, c := range chain {
		n += 3 + c.Size
	}
	if version == "TLS 1.3" {
		n += 1 + 2*len(chain)
	}
	return n
}

// Describe turns a chain into evidence.
func Describe(chain []*x509.Certificate) []Cert {
	out := make([]Cert, 0, len(chain))
	for _, c := range chain {
		sum := sha256.Sum256(c.Raw)
		spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		out = append(out, Cert{
			Subject:    c.Subject.String(),
			Issuer:     c.Issuer.String(),
			DNSNames:   c.DNSNames,
			NotBefore:  c.NotBefore.UTC(),
			NotAfter:   c.NotAfter.UTC(),
			IsCA:       c.IsCA,
			SelfSigned: selfSigned(c),
			KeyType:    keyType(c),
			SHA256:     hex.EncodeToString(sum[:]),
			SPKISHA256: hex.EncodeToString(spki[:]),
			Size:       len(c.Raw),
		})
	}
	return out
}

// Verdict is the result of Verify.
type Verdict struct {
	Trusted   bool      `json:"trusted"`    // chains to a trusted root and every certificate is in its validity period
	NameMatch bool      `json:"name_match"` // the leaf has a DNS-ID for the host
	NotAfter  time.Time `json:"not_after"`  // of the leaf
	Problems  []Problem `json:"problems,omitempty"`
}

// OK reports whether senders accept the chain for the host.
func (v Verdict) OK() bool { return v.Trusted && v.NameMatch }

// Has reports whether the verdict has a problem with code c.
func (v Verdict) Has(c Code) bool {
	return slices.ContainsFunc(v.Problems, func(p Problem) bool { return p.Code == c })
}

// Verify checks chain (leaf first, as presented) for host against roots
// (nil means the system roots) at time now.
func Verify(chain []*x509.Certificate, host string, roots *x509.CertPool, now time.Time) Verdict {
	var v Verdict
	add := func(c Code, format string, args ...any) {
		v.Problems = append(v.Problems, Problem{Code: c, Detail: fmt.Sprintf(format, args...)})
	}
	if len(chain) == 0 {
		add(NoCertificate, "the server presented no certificate")
		return v
	}
	leaf := chain[0]
	v.NotAfter = leaf.NotAfter.UTC()
	timeOK := true
	for i, c := range chain {
		what := "the certificate"
		if i > 0 {
			what = fmt.Sprintf("the chain certificate %q", c.Subject.CommonName)
		}
		switch {
		case now.After(c.NotAfter):
			timeOK = false
			add(Expired, "%s expired on %s (%s ago)", what, c.NotAfter.UTC().Format(time.DateOnly), ago(now.Sub(c.NotAfter)))
		case now.Before(c.NotBefore):
			timeOK = false
			add(NotYetValid, "%s is valid only from %s", what, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if timeOK && leaf.NotAfter.Sub(now) < SoonWindow {
		add(ExpiresSoon, "the certificate expires on %s, in %s", leaf.NotAfter.UTC().Format(time.DateOnly), ago(leaf.NotAfter.Sub(now)))
	}

	// Trust is judged at a moment when every certificate is valid, so that an
	// expired certificate does not hide an untrusted one (and vice versa).
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verifyAt := func(at time.Time) error {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}
	err := verifyAt(now)
	if !timeOK {
		for _, at := range validMoments(chain) {
			if err = verifyAt(at); !isTimeError(err) {
				break
			}
		}
	}
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
		v.Trusted = timeOK
	case isTimeError(err):
		// Already reported; no moment makes every certificate valid, so
		// trust cannot be judged separately.
	case errors.As(err, &unknown):
		top := chain[len(chain)-1]
		switch {
		case len(chain) == 1 && selfSigned(leaf):
			add(SelfSigned, "the certificate is self-signed (%s)", name(leaf))
		case !selfSigned(top) && len(chain) == 1:
			add(IncompleteChain, "the server sends only its own certificate, not the intermediate certificate of %q; senders do not fetch missing intermediates", leaf.Issuer.String())
		case !selfSigned(top):
			add(Untrusted, "the chain ends at %s, issued by %q, which is not a trusted root (or an intermediate is missing)", name(top), top.Issuer.String())
		default:
			add(Untrusted, "the chain leads to the root %s, which senders do not trust", name(top))
		}
	default:
		add(Invalid, "the chain does not verify: %v", err)
	}

	if err := leaf.VerifyHostname(host); err == nil {
		v.NameMatch = true
	} else {
		switch {
		case len(leaf.DNSNames) == 0 && strings.EqualFold(leaf.Subject.CommonName, host):
			add(NameMismatch, "the certificate names %q only in its CN and has no subjectAltName; senders ignore the CN", host)
		case len(leaf.DNSNames) == 0:
			add(NameMismatch, "the certificate has no DNS names (subjectAltName); its CN is %q", leaf.Subject.CommonName)
		default:
			add(NameMismatch, "the certificate is for %s, not %q", listNames(leaf.DNSNames), host)
		}
	}
	return v
}

// validMoments returns moments at which the certificates are valid: one
// inside every certificate's validity period if there is one, then the
// middle of the leaf's.
func validMoments(chain []*x509.Certificate) []time.Time {
	var out []time.Time
	start, end := chain[0].NotBefore, chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotBefore.After(start) {
			start = c.NotBefore
		}
		if c.NotAfter.Before(end) {
			end = c.NotAfter
		}
	}
	if start.Before(end) {
		out = append(out, start.Add(end.Sub(start)/2))
	}
	leaf := chain[0]
	return append(out, leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2))
}

func isTimeError(err error) bool {
	var inv x509.CertificateInvalidError
	return errors.As(err, &inv) && inv.Reason == x509.Expired
}

// selfSigned reports whether c is signed by its own key (CheckSignatureFrom
// would insist that c be a CA, which self-signed leaves are not).
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// name describes a certificate by its subject, or its DNS names when the
// subject is empty.
func name(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	if len(c.DNSNames) > 0 {
		return "for " + listNames(c.DNSNames)
	}
	return "with an empty subject"
}

func keyType(c *x509.Certificate) string {
	switch c.PublicKeyAlgorithm {
	case x509.RSA:
		return "RSA"
	case x509.ECDSA:
		return "ECDSA"
	case x509.Ed25519:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

func listNames(names []string) string {
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

// ago formats a duration in days or hours for messages.
func ago(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}
