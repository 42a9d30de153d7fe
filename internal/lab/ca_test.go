package lab_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lab"
)

// verify checks cert's chain the way a TLS client would.
func verify(t *testing.T, chain [][]byte, roots *x509.CertPool, name string) error {
	t.Helper()
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse chain[%d]: %v", i, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func TestCAVariants(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	other := lab.MustCA(t, "other")
	const host = "mta-sts.example.test"
	now := time.Now()

	isOK := func(err error) bool { return err == nil }
	isExpired := func(err error) bool {
		var e x509.CertificateInvalidError
		return errors.As(err, &e) && e.Reason == x509.Expired
	}
	isHostname := func(err error) bool {
		var e x509.HostnameError
		return errors.As(err, &e)
	}
	isUnknownAuthority := func(err error) bool {
		var e x509.UnknownAuthorityError
		return errors.As(err, &e)
	}

	tests := []struct {
		name      string
		ca        *lab.CA
		opts      lab.LeafOptions
		verifyAs  string
		wantChain int
		want      func(error) bool
		wantDesc  string
	}{
		{"good", ca, lab.LeafOptions{DNSNames: []string{host}}, host, 2, isOK, "no error"},
		{"good RSA", ca, lab.LeafOptions{DNSNames: []string{host}, RSA: true}, host, 2, isOK, "no error"},
		{"good IP", ca, lab.LeafOptions{IPAddresses: []net.IP{net.ParseIP("127.0.0.10")}}, "127.0.0.10", 2, isOK, "no error"},
		{"expired", ca, lab.LeafOptions{DNSNames: []string{host}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)},
			host, 2, isExpired, "x509.Expired"},
		{"not yet valid", ca, lab.LeafOptions{DNSNames: []string{host}, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)},
			host, 2, isExpired, "x509.Expired"},
		{"wrong name", ca, lab.LeafOptions{DNSNames: []string{"other.example.test"}}, host, 2, isHostname, "x509.HostnameError"},
		{"CN only", ca, lab.LeafOptions{CommonName: host}, host, 2, isHostname, "x509.HostnameError"},
		{"self-signed", ca, lab.LeafOptions{DNSNames: []string{host}, SelfSigned: true}, host, 1, isUnknownAuthority, "x509.UnknownAuthorityError"},
		{"untrusted CA", other, lab.LeafOptions{DNSNames: []string{host}}, host, 2, isUnknownAuthority, "x509.UnknownAuthorityError"},
		{"incomplete chain", ca, lab.LeafOptions{DNSNames: []string{host}, OmitIntermediate: true}, host, 1, isUnknownAuthority, "x509.UnknownAuthorityError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert := tt.ca.MustIssue(t, tt.opts)
			if got := len(cert.Certificate); got != tt.wantChain {
				t.Errorf("chain length = %d, want %d", got, tt.wantChain)
			}
			if cert.Leaf == nil || !bytes.Equal(cert.Leaf.Raw, cert.Certificate[0]) {
				t.Errorf("Leaf is not the first certificate of the chain")
			}
			if err := verify(t, cert.Certificate, ca.Pool(), tt.verifyAs); !tt.want(err) {
				t.Errorf("verify: err = %v, want %s", err, tt.wantDesc)
			}
		})
	}
}

func TestCAKeysAndDefaults(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test")
	ec := ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"a.example.test"}})
	if _, ok := ec.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("default key is %T, want *ecdsa.PrivateKey", ec.PrivateKey)
	}
	if got := ec.Leaf.NotAfter.Sub(ec.Leaf.NotBefore); got < 90*24*time.Hour {
		t.Errorf("default validity = %v, want at least 90 days", got)
	}
	r := ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"a.example.test"}, RSA: true})
	if k, ok := r.PrivateKey.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("RSA key is %T, want a 2048-bit *rsa.PrivateKey", r.PrivateKey)
	}
	if !ca.Root().IsCA || !ca.Intermediate().IsCA {
		t.Errorf("root and intermediate must be CAs")
	}
	if err := ca.Intermediate().CheckSignatureFrom(ca.Root()); err != nil {
		t.Errorf("intermediate not signed by root: %v", err)
	}
	if ca.Root().NotAfter.Before(time.Now().Add(9 * 365 * 24 * time.Hour)) {
		t.Errorf("root expires %v, want about 10 years from now", ca.Root().NotAfter)
	}
}

func TestCARootPEM(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "test lab/1")
	block, rest := pem.Decode(ca.RootPEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("RootPEM is not one CERTIFICATE block")
	}
	if !bytes.Equal(block.Bytes, ca.Root().Raw) {
		t.Errorf("RootPEM does not hold the root")
	}
	path, err := ca.WriteRootPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, ca.RootPEM()) {
		t.Errorf("file %s differs from RootPEM", path)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Errorf("file %s is not usable as a CA file", path)
	}
}
