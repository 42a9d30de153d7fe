package lab

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMKeys are a reporter's DKIM keys (RFC 6376): one RSA and one Ed25519
// (RFC 8463) key, published in a lab DNS and used to sign report mail.
type DKIMKeys struct {
	RSA     *rsa.PrivateKey
	Ed25519 ed25519.PrivateKey
}

// The RSA key is shared: generating one takes long.
var dkimRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// NewDKIMKeys returns a shared RSA key and a new Ed25519 key.
func NewDKIMKeys() *DKIMKeys {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return &DKIMKeys{RSA: dkimRSA(), Ed25519: ed}
}

// Publish puts the key record of selector._domainkey.dom in d; extra
// holds more tags ("s=tlsrpt;").
func (k *DKIMKeys) Publish(t testing.TB, d *DNS, selector, dom string, ed bool, extra string) {
	t.Helper()
	var rec string
	if ed {
		rec = "v=DKIM1; k=ed25519; " + extra + " p=" + base64.StdEncoding.EncodeToString(k.Ed25519.Public().(ed25519.PublicKey))
	} else {
		der, _ := x509.MarshalPKIXPublicKey(&k.RSA.PublicKey)
		rec = "v=DKIM1; k=rsa; " + extra + " p=" + base64.StdEncoding.EncodeToString(der)
	}
	var strs []string
	for len(rec) > 200 {
		strs = append(strs, `"`+rec[:200]+`"`)
		rec = rec[200:]
	}
	strs = append(strs, `"`+rec+`"`)
	d.MustAdd(t, fmt.Sprintf("%s._domainkey.%s. 300 IN TXT %s", selector, dom, strings.Join(strs, " ")))
}

// Sign signs mail (CRLF line endings) with go-msgauth as dom/selector,
// covering the RFC 8460 §5.3 header fields.
func (k *DKIMKeys) Sign(t testing.TB, mail, dom, selector string, ed bool) string {
	t.Helper()
	var signer crypto.Signer = k.RSA
	if ed {
		signer = k.Ed25519
	}
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(mail), &dkim.SignOptions{
		Domain: dom, Selector: selector, Signer: signer,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "TLS-Report-Domain", "TLS-Report-Submitter", "Content-Type", "MIME-Version"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// SignWithL signs mail by hand (simple/simple, Ed25519) with an l= tag
// covering exactly the body as it is: a signature every verifier that
// allows l= accepts, and that lets anyone append to the body (RFC 8460 §3
// forbids it).
func (k *DKIMKeys) SignWithL(t testing.TB, mail, dom, selector string) string {
	t.Helper()
	head, body, _ := strings.Cut(mail, "\r\n\r\n")
	body = strings.TrimRight(body, "\r\n") + "\r\n"
	bh := sha256.Sum256([]byte(body))
	fields := map[string]string{}
	for _, line := range strings.Split(head, "\r\n") {
		if key, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			fields[strings.ToLower(key)] = line + "\r\n"
		}
	}
	sig := fmt.Sprintf("DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; d=%s; s=%s; l=%d; h=from:subject; bh=%s; b=",
		dom, selector, len(body), base64.StdEncoding.EncodeToString(bh[:]))
	h := sha256.New()
	h.Write([]byte(fields["from"] + fields["subject"] + sig))
	b := ed25519.Sign(k.Ed25519, h.Sum(nil))
	return sig + base64.StdEncoding.EncodeToString(b) + "\r\n" + head + "\r\n\r\n" + body
}

// ReportMail is a TLS-RPT report mail (RFC 8460 §5.3) from
// tlsrpt@submitter to rcpt about dom, carrying the gzip'd report gz in
// base64, unsigned (sign it with DKIMKeys.Sign).
func ReportMail(submitter, rcpt, dom, id string, gz []byte) string {
	enc := base64.StdEncoding.EncodeToString(gz)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return "From: tlsrpt@" + submitter + "\r\nTo: " + rcpt + "\r\n" +
		"Subject: Report Domain: " + dom + " Submitter: " + submitter + " Report-ID: <" + id + "@" + submitter + ">\r\n" +
		"TLS-Report-Domain: " + dom + "\r\nTLS-Report-Submitter: " + submitter + "\r\nMessage-ID: <" + id + "@" + submitter + ">\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=tlsrpt; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nreport\r\n--B\r\n" +
		"Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b.String() + "--B--\r\n"
}
