package webpki_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/webpki"
)

// TestOpenSSLMaxCertList checks the rule behind the *-cert-chain-too-large
// warnings against real OpenSSL: Python's ssl module (what
// postfix-mta-sts-resolver fetches with) completes the handshake with a
// chain whose Certificate message is within OpenSSLMaxCertList and fails
// just above it. It needs /usr/bin/python3 (a dependency of the peer
// resolver .ci/run installs); without it it skips, under CI it fails.
func TestOpenSSLMaxCertList(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing; CI installs it with postfix-mta-sts-resolver", python)
		}
		t.Skipf("%s is missing", python)
	}
	ca, err := lab.NewCA("openssl")
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.WriteRootPEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, padding := range []int{98 << 10, 99 << 10, 101 << 10, 110 << 10} {
		cert := ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{"localhost"}, Padding: padding})
		var chain []*x509.Certificate
		for _, der := range cert.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, c)
		}
		size := webpki.CertificateMessageSize(webpki.Describe(chain), "TLS 1.3")
		tooLarge := size > webpki.OpenSSLMaxCertList
		out := handshake(t, python, root, cert)
		if ok := strings.HasPrefix(out, "ok"); ok == tooLarge {
			t.Errorf("chain of %d bytes in the Certificate message (limit %d): OpenSSL says %q", size, webpki.OpenSSLMaxCertList, out)
		}
		if tooLarge && !strings.Contains(out, "EXCESSIVE_MESSAGE_SIZE") {
			t.Errorf("chain of %d bytes fails for another reason: %q", size, out)
		}
	}
}

// handshake has Python's ssl connect to a TLS 1.3 server presenting cert.
func handshake(t *testing.T, python, root string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	out, err := exec.Command(python, "-c", `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10), server_hostname="localhost")
    print("ok", s.version())
except Exception as e:
    print("fail", e)
`, root, port).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}
