package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Validity periods of the lab PKI.
const (
	rootLifetime         = 10 * 365 * 24 * time.Hour
	intermediateLifetime = 5 * 365 * 24 * time.Hour
	leafLifetime         = 90 * 24 * time.Hour
	backdate             = 24 * time.Hour // root and intermediate start this long ago
	leafBackdate         = time.Hour
)

// CA is a test certificate authority made of a self-signed root and one
// intermediate, both ECDSA P-256, generated in memory:
//
//	root "<name> Root"                (self-signed, trust anchor: Pool, RootPEM)
//	  └── intermediate "<name> Intermediate"   (sent in the chain)
//	        └── leaf (Issue)          (DNSNames, CommonName, IPAddresses)
//
// Certificates that should not verify are made with LeafOptions (expired,
// not yet valid, wrong name, CN only, self-signed, incomplete chain) or by
// issuing from a second CA whose root the client does not trust. A CA is
// safe for concurrent use.
type CA struct {
	name     string
	root     *x509.Certificate
	inter    *x509.Certificate
	interKey crypto.Signer
}

// LeafOptions describes a leaf certificate for CA.Issue. The zero value
// (apart from DNSNames) gives a good certificate.
type LeafOptions struct {
	DNSNames    []string
	CommonName  string
	IPAddresses []net.IP
	// NotBefore and NotAfter default to an hour ago and 90 days from now.
	NotBefore, NotAfter time.Time
	// RSA selects an RSA-2048 key instead of ECDSA P-256.
	RSA bool
	// OmitIntermediate sends the leaf alone, an incomplete chain.
	OmitIntermediate bool
	// SelfSigned makes the leaf sign itself instead of the intermediate.
	SelfSigned bool
	// Padding adds a non-critical private extension of that many bytes,
	// for chains larger than a client accepts.
	Padding int
}

// paddingOID is under the enterprise number IANA keeps for documentation
// (RFC 5612).
var paddingOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1}

// NewCA generates a root and an intermediate named after name.
func NewCA(name string) (*CA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: ca %q: %w", name, err)
	}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Root", Organization: []string{"mailtls lab"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root, err := sign(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("lab: ca %q root: %w", name, err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: ca %q: %w", name, err)
	}
	interTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Intermediate", Organization: []string{"mailtls lab"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(intermediateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	inter, err := sign(interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("lab: ca %q intermediate: %w", name, err)
	}
	return &CA{name: name, root: root, inter: inter, interKey: interKey}, nil
}

// MustCA is NewCA for tests: it fails t on error.
func MustCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// sign creates a certificate from tmpl signed by parent's key and parses it.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Issue creates a leaf certificate and its key. The chain is [leaf,
// intermediate], or [leaf] with OmitIntermediate or SelfSigned; Leaf is set.
func (ca *CA) Issue(o LeafOptions) (tls.Certificate, error) {
	var key crypto.Signer
	var err error
	keyUsage := x509.KeyUsageDigitalSignature
	if o.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		keyUsage |= x509.KeyUsageKeyEncipherment
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lab: ca %q issue: %w", ca.name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: o.CommonName},
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPAddresses,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if o.Padding > 0 {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: paddingOID, Value: make([]byte, o.Padding)}}
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-leafBackdate)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(leafLifetime)
	}
	parent, parentKey := ca.inter, ca.interKey
	if o.SelfSigned {
		parent, parentKey = tmpl, key
	}
	leaf, err := sign(tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lab: ca %q issue: %w", ca.name, err)
	}
	cert := tls.Certificate{
		Certificate: [][]byte{leaf.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	if !o.OmitIntermediate && !o.SelfSigned {
		cert.Certificate = append(cert.Certificate, ca.inter.Raw)
	}
	return cert, nil
}

// MustIssue is Issue for tests: it fails t on error.
func (ca *CA) MustIssue(t testing.TB, o LeafOptions) tls.Certificate {
	t.Helper()
	cert, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Root returns the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate returns the intermediate certificate.
func (ca *CA) Intermediate() *x509.Certificate { return ca.inter }

// Pool returns a new pool holding only the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// RootPEM returns the root certificate PEM-encoded.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// WriteRootPEM writes the root certificate to a file in dir (for a
// command-line --ca-file flag) and returns the file's path.
func (ca *CA) WriteRootPEM(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("lab: write root pem: empty directory")
	}
	path := filepath.Join(dir, fileName(ca.name)+"-root.pem")
	if err := os.WriteFile(path, ca.RootPEM(), 0o644); err != nil {
		return "", fmt.Errorf("lab: write root pem: %w", err)
	}
	return path, nil
}

// fileName keeps letters, digits, '-' and '_' of s and replaces the rest.
func fileName(s string) string {
	f := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	if f == "" {
		f = "ca"
	}
	return f
}

// WriteLeaf issues a leaf and writes it, with its chain, and its key as PEM
// files in dir (named after the first DNS name), for servers configured by
// file. It returns the two paths.
func (ca *CA) WriteLeaf(dir string, o LeafOptions) (certFile, keyFile string, err error) {
	c, err := ca.Issue(o)
	if err != nil {
		return "", "", err
	}
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("lab: write leaf: %w", err)
	}
	base := "leaf"
	if len(o.DNSNames) > 0 {
		base = fileName(o.DNSNames[0])
	}
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		return "", "", fmt.Errorf("lab: write leaf: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		return "", "", fmt.Errorf("lab: write leaf: %w", err)
	}
	return certFile, keyFile, nil
}

// MustWriteLeaf is WriteLeaf for tests: it fails t on error.
func (ca *CA) MustWriteLeaf(t testing.TB, dir string, o LeafOptions) (certFile, keyFile string) {
	t.Helper()
	c, k, err := ca.WriteLeaf(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}
