package dane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"
)

// now is the fixed "current time" of every test.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// The test PKI, generated once per test binary (ECDSA P-256 unless noted):
//
//	root      "DANE Test Root"               self-signed CA, never sent by servers
//	│                                        except in the *Full chains
//	├── inter "DANE Test Intermediate"       CA
//	│   ├── leafEC       SAN mx.example.com
//	│   ├── leafRSA      SAN mx.example.com  (RSA 2048)
//	│   ├── leafCN       CN mx.example.com, no SAN
//	│   ├── leafNextHop  SAN example.com only
//	│   ├── leafWild     SAN *.example.com
//	│   └── leafExpired  SAN mx.example.com, expired a month before now
//	└── oldInter "DANE Old Intermediate"     CA, expired a month before now
//	    └── leafOld      SAN mx.example.com (itself valid)
//
//	selfSigned  CN/SAN mx.example.com        self-signed, not a CA, expired
//	nextLeaf    SAN mx.example.com           a new key from inter, not yet deployed
//
// Chains as servers present them, leaf first:
//
//	ecChain     leafEC, inter
//	ecFull      leafEC, inter, root
//	rsaChain    leafRSA, inter
//	cnChain     leafCN, inter
//	nextHop     leafNextHop, inter
//	wildChain   leafWild, inter
//	expChain    leafExpired, inter
//	oldChain    leafOld, oldInter
//	selfChain   selfSigned
type pki struct {
	root, inter, oldInter                                                          *x509.Certificate
	leafEC, leafRSA, leafCN, leafNextHop, leafWild, leafExpired, leafOld, nextLeaf *x509.Certificate
	selfSigned                                                                     *x509.Certificate
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
	pkiErr  error
)

// testPKI returns the shared, read-only test PKI.
func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type certSpec struct {
	cn        string
	dns       []string
	ca        bool
	notBefore time.Time
	notAfter  time.Time
	key       crypto.Signer // generated (ECDSA P-256) when nil
}

func issue(serial int64, spec certSpec, parent *issuer) (*issuer, error) {
	key := spec.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = now.Add(-30 * 24 * time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = now.Add(60 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: spec.cn},
		DNSNames:              spec.dns,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
	}
	if spec.ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer{cert: c, key: key}, nil
}

func makePKI() (*pki, error) {
	var p pki
	var firstErr error
	var serial int64
	must := func(spec certSpec, parent *issuer) *issuer {
		if firstErr != nil {
			return nil
		}
		serial++
		is, err := issue(serial, spec, parent)
		if err != nil {
			firstErr = err
			return nil
		}
		return is
	}
	root := must(certSpec{cn: "DANE Test Root", ca: true, notBefore: now.Add(-365 * 24 * time.Hour), notAfter: now.Add(3650 * 24 * time.Hour)}, nil)
	inter := must(certSpec{cn: "DANE Test Intermediate", ca: true, notBefore: now.Add(-180 * 24 * time.Hour), notAfter: now.Add(365 * 24 * time.Hour)}, root)
	oldInter := must(certSpec{cn: "DANE Old Intermediate", ca: true, notBefore: now.Add(-365 * 24 * time.Hour), notAfter: now.Add(-30 * 24 * time.Hour)}, root)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	leafEC := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}}, inter)
	leafRSA := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}, key: rsaKey}, inter)
	leafCN := must(certSpec{cn: "mx.example.com"}, inter)
	leafNextHop := must(certSpec{cn: "example.com", dns: []string{"example.com"}}, inter)
	leafWild := must(certSpec{cn: "*.example.com", dns: []string{"*.example.com"}}, inter)
	leafExpired := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}, notBefore: now.Add(-120 * 24 * time.Hour), notAfter: now.Add(-30 * 24 * time.Hour)}, inter)
	leafOld := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}, notBefore: now.Add(-60 * 24 * time.Hour), notAfter: now.Add(30 * 24 * time.Hour)}, oldInter)
	nextLeaf := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}}, inter)
	self := must(certSpec{cn: "mx.example.com", dns: []string{"mx.example.com"}, notBefore: now.Add(-800 * 24 * time.Hour), notAfter: now.Add(-400 * 24 * time.Hour)}, nil)
	if firstErr != nil {
		return nil, firstErr
	}
	p.root, p.inter, p.oldInter = root.cert, inter.cert, oldInter.cert
	p.leafEC, p.leafRSA, p.leafCN, p.leafNextHop = leafEC.cert, leafRSA.cert, leafCN.cert, leafNextHop.cert
	p.leafWild, p.leafExpired, p.leafOld, p.nextLeaf = leafWild.cert, leafExpired.cert, leafOld.cert, nextLeaf.cert
	p.selfSigned = self.cert
	return &p, nil
}

// fuzzChain is a deterministic chain for FuzzVerify: Ed25519 keys from
// fixed seeds and fixed dates make the certificates byte-identical in every
// fuzz worker, so corpus entries keep their meaning.
//
//	fuzz root "Fuzz Root" → fuzz intermediate "Fuzz Intermediate" → leaf SAN mx.example.com
//
// The server sends leaf, intermediate, root.
func fuzzChain(t testing.TB) []*x509.Certificate {
	t.Helper()
	seed := func(b byte) ed25519.PrivateKey {
		s := make([]byte, ed25519.SeedSize)
		for i := range s {
			s[i] = b
		}
		return ed25519.NewKeyFromSeed(s)
	}
	mk := func(n int64, cn string, dns []string, ca bool, key, parentKey ed25519.PrivateKey, parent *x509.Certificate) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(n),
			Subject:               pkix.Name{CommonName: cn},
			DNSNames:              dns,
			NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:              time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
			BasicConstraintsValid: true,
			IsCA:                  ca,
		}
		if ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rk, ik, lk := seed(1), seed(2), seed(3)
	root := mk(1, "Fuzz Root", nil, true, rk, rk, nil)
	inter := mk(2, "Fuzz Intermediate", nil, true, ik, rk, root)
	leaf := mk(3, "mx.example.com", []string{"mx.example.com"}, false, lk, ik, inter)
	return []*x509.Certificate{leaf, inter, root}
}
