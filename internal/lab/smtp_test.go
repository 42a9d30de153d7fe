package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/lab"
)

// smtpClient is a minimal SMTP client for the tests: every read and write
// has a deadline, so a misbehaving server fails a test instead of hanging
// it.
type smtpClient struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

// smtpTestTimeout is a safety net for clients and waits; the tests do not
// depend on it.
const smtpTestTimeout = 15 * time.Second

// smtpPatient are timeouts longer than any test: a server that stops only
// thanks to them fails the test.
const smtpPatient = time.Minute

func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, smtpTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(smtpTestTimeout)); err != nil {
		t.Fatal(err)
	}
	return &smtpClient{t: t, conn: conn, text: textproto.NewConn(conn)}
}

// reply reads a reply and returns its code and text (lines joined by "\n",
// codes stripped).
func (c *smtpClient) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.text.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return code, msg
}

// expect reads a reply and fails unless its code is want.
func (c *smtpClient) expect(want int) string {
	c.t.Helper()
	code, msg := c.reply()
	if code != want {
		c.t.Fatalf("reply %d %q, want code %d", code, msg, want)
	}
	return msg
}

func (c *smtpClient) send(line string) {
	c.t.Helper()
	if err := c.text.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("sending %q: %v", line, err)
	}
}

// cmd sends line and expects a reply with code want.
func (c *smtpClient) cmd(want int, line string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(want)
}

// ehlo says EHLO and reports whether STARTTLS is advertised.
func (c *smtpClient) ehlo() bool {
	c.t.Helper()
	lines := strings.Split(c.cmd(250, "EHLO mailtls.example"), "\n")
	return slices.Contains(lines[1:], "STARTTLS")
}

// startTLS sends STARTTLS, expects 220 and runs the handshake.
func (c *smtpClient) startTLS(cfg *tls.Config) (*tls.Conn, error) {
	c.t.Helper()
	c.cmd(220, "STARTTLS")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	c.text = textproto.NewConn(tc)
	return tc, nil
}

// waitIdle waits for the server to finish with its clients.
func waitIdle(t *testing.T, s *lab.SMTPServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), smtpTestTimeout)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v", err)
	}
}

// onlySession returns the server's single session.
func onlySession(t *testing.T, s *lab.SMTPServer) lab.SMTPSession {
	t.Helper()
	waitIdle(t, s)
	sessions := s.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("Sessions() = %+v, want one", sessions)
	}
	return sessions[0]
}

// closesWithin fails t unless s.Close returns within d.
func closesWithin(t *testing.T, s *lab.SMTPServer, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close() = %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Close() did not return within %v", d)
	}
}

const mxName = "mx.example.test"

func TestSMTPBanner(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp banner")
	tests := []struct {
		mode     lab.SMTPMode
		wantCode int
		wantText string
		closes   bool
	}{
		{lab.SMTPStartTLS, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPNoStartTLS, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPStartTLSRefused, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPHandshakeFails, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPPlainAfterSTARTTLS, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPStallAfterBanner, 220, mxName + " ESMTP mailtls lab", false},
		{lab.SMTPBanner421, 421, "4.7.0 " + mxName + " Too many connections, try again later", true},
		{lab.SMTPBanner554, 554, "5.7.1 " + mxName + " No SMTP service here", true},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			s := lab.NewSMTP(t, lab.SMTPOptions{Mode: tt.mode, Name: mxName}, ca)
			c := dialSMTP(t, s.Addr())
			code, text := c.reply()
			if code != tt.wantCode || text != tt.wantText {
				t.Errorf("banner = %d %q, want %d %q", code, text, tt.wantCode, tt.wantText)
			}
			if !tt.closes {
				return
			}
			// The server closes after the reply, even if the client
			// already said EHLO.
			c.send("EHLO mailtls.example")
			if b, err := c.text.R.ReadByte(); err != io.EOF {
				t.Errorf("after the banner: read %q, %v; want EOF", b, err)
			}
			c.conn.Close()
			if got := onlySession(t, s).Commands; len(got) != 0 {
				t.Errorf("Commands = %q, want none", got)
			}
		})
	}
}

func TestSMTPDialog(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp dialog")
	tests := []struct {
		mode         lab.SMTPMode
		wantSTARTTLS bool
		wantCode     int
		wantText     string
	}{
		{lab.SMTPNoStartTLS, false, 502, "5.5.1 not implemented"},
		{lab.SMTPStartTLSRefused, true, 454, "4.7.0 TLS not available due to temporary reason"},
		{lab.SMTPStartTLS, true, 220, "2.0.0 Ready to start TLS"},
		{lab.SMTPHandshakeFails, true, 220, "2.0.0 Ready to start TLS"},
		{lab.SMTPPlainAfterSTARTTLS, true, 220, "2.0.0 Ready to start TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			s := lab.NewSMTP(t, lab.SMTPOptions{Mode: tt.mode, Name: mxName}, ca)
			c := dialSMTP(t, s.Addr())
			c.expect(220)
			c.cmd(503, "MAIL FROM:<a@example.test>") // before EHLO
			if got := c.ehlo(); got != tt.wantSTARTTLS {
				t.Errorf("EHLO advertises STARTTLS = %v, want %v", got, tt.wantSTARTTLS)
			}
			c.send("starttls")
			if code, text := c.reply(); code != tt.wantCode || text != tt.wantText {
				t.Fatalf("STARTTLS: %d %q, want %d %q", code, text, tt.wantCode, tt.wantText)
			}
			want := []string{"MAIL FROM:<a@example.test>", "EHLO mailtls.example", "STARTTLS"}
			if tt.wantCode == 220 {
				c.conn.Close() // the TLS tests go on from here
			} else {
				// The session goes on in plain text; no mail is accepted.
				c.cmd(550, "MAIL FROM:<a@example.test>")
				c.cmd(503, "RCPT TO:<b@example.test>")
				c.cmd(503, "DATA")
				c.cmd(250, "NOOP")
				c.cmd(250, "RSET")
				c.cmd(252, "VRFY postmaster")
				c.cmd(502, "XYZZY now")
				c.cmd(501, "EHLO")
				if text := c.cmd(250, "helo mailtls.example"); text != mxName+" Hello mailtls.example" {
					t.Errorf("HELO reply %q", text)
				}
				c.cmd(221, "quit")
				want = append(want, "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA", "NOOP",
					"RSET", "VRFY postmaster", "XYZZY now", "EHLO", "HELO mailtls.example", "QUIT")
			}
			got := onlySession(t, s)
			if !slices.Equal(got.Commands, want) {
				t.Errorf("Commands = %q, want %q", got.Commands, want)
			}
			if got.TLS || got.Concurrent != 1 || got.Remote != c.conn.LocalAddr().String() {
				t.Errorf("session = %+v, want no TLS, Concurrent 1, Remote %s", got, c.conn.LocalAddr())
			}
		})
	}
}

func TestSMTPStartTLS(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp starttls")
	s := lab.NewSMTP(t, lab.SMTPOptions{Name: "mx1.example.test"}, ca)
	c := dialSMTP(t, s.Addr())
	c.expect(220)
	if !c.ehlo() {
		t.Fatal("EHLO does not advertise STARTTLS")
	}
	tc, err := c.startTLS(&tls.Config{ServerName: "mx1.example.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if leaf := tc.ConnectionState().PeerCertificates[0]; !slices.Equal(leaf.DNSNames, []string{"mx1.example.test"}) {
		t.Errorf("certificate for %q, want mx1.example.test", leaf.DNSNames)
	}
	c.cmd(503, "MAIL FROM:<a@example.test>") // EHLO again first
	if c.ehlo() {
		t.Error("EHLO advertises STARTTLS inside TLS")
	}
	c.cmd(554, "STARTTLS")
	c.cmd(221, "QUIT")
	tc.Close()

	got := onlySession(t, s)
	want := lab.SMTPSession{
		Remote:     c.conn.LocalAddr().String(),
		Commands:   []string{"EHLO mailtls.example", "STARTTLS", "MAIL FROM:<a@example.test>", "EHLO mailtls.example", "STARTTLS", "QUIT"},
		TLS:        true,
		TLSVersion: tls.VersionTLS13,
		ServerName: "mx1.example.test",
		Concurrent: 1,
	}
	if got.Remote != want.Remote || !slices.Equal(got.Commands, want.Commands) || got.TLS != want.TLS ||
		got.TLSVersion != want.TLSVersion || got.ServerName != want.ServerName || got.Concurrent != want.Concurrent {
		t.Errorf("session = %+v,\nwant %+v", got, want)
	}
}

func TestSMTPTLSOptions(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp tls")
	untrusted := lab.MustCA(t, "smtp untrusted")
	leaf := func(ca *lab.CA, rsa bool) tls.Certificate {
		return ca.MustIssue(t, lab.LeafOptions{DNSNames: []string{mxName}, RSA: rsa})
	}
	both := []tls.Certificate{leaf(ca, true), leaf(ca, false)}
	tls12 := func(suite uint16) *tls.Config {
		return &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}
	}
	tests := []struct {
		name        string
		server      lab.SMTPOptions
		client      *tls.Config // ServerName and RootCAs are filled in
		wantErr     bool
		wantVersion uint16
		wantKey     x509.PublicKeyAlgorithm
	}{
		{"default", lab.SMTPOptions{}, &tls.Config{}, false, tls.VersionTLS13, x509.ECDSA},
		{"tls10 only", lab.SMTPOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
			&tls.Config{MinVersion: tls.VersionTLS10}, false, tls.VersionTLS10, x509.ECDSA},
		{"tls10 only, implied min", lab.SMTPOptions{MaxVersion: tls.VersionTLS10},
			&tls.Config{MinVersion: tls.VersionTLS10}, false, tls.VersionTLS10, x509.ECDSA},
		{"tls10 only, client wants 1.2", lab.SMTPOptions{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
			&tls.Config{MinVersion: tls.VersionTLS12}, true, 0, 0},
		{"tls12 max", lab.SMTPOptions{MaxVersion: tls.VersionTLS12}, &tls.Config{}, false, tls.VersionTLS12, x509.ECDSA},
		{"rsa cert", lab.SMTPOptions{Cert: leaf(ca, true)}, &tls.Config{}, false, tls.VersionTLS13, x509.RSA},
		{"rsa and ecdsa, rsa suite", lab.SMTPOptions{Certs: both},
			tls12(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), false, tls.VersionTLS12, x509.RSA},
		{"rsa and ecdsa, ecdsa suite", lab.SMTPOptions{Certs: both},
			tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), false, tls.VersionTLS12, x509.ECDSA},
		{"untrusted", lab.SMTPOptions{Cert: leaf(untrusted, false)}, &tls.Config{}, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.server.Name = mxName
			s := lab.NewSMTP(t, tt.server, ca)
			c := dialSMTP(t, s.Addr())
			c.expect(220)
			c.ehlo()
			cfg := tt.client.Clone()
			cfg.ServerName, cfg.RootCAs = mxName, ca.Pool()
			tc, err := c.startTLS(cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("handshake succeeded with %#x, want an error", tc.ConnectionState().Version)
				}
				c.conn.Close()
			} else {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				st := tc.ConnectionState()
				if st.Version != tt.wantVersion || st.PeerCertificates[0].PublicKeyAlgorithm != tt.wantKey {
					t.Errorf("negotiated %s with a %v certificate, want %s with %v",
						tls.VersionName(st.Version), st.PeerCertificates[0].PublicKeyAlgorithm,
						tls.VersionName(tt.wantVersion), tt.wantKey)
				}
				c.cmd(221, "QUIT")
			}
			got := onlySession(t, s)
			if got.TLS == tt.wantErr || got.TLSVersion != tt.wantVersion {
				t.Errorf("session TLS = %v %#x, want %v %#x", got.TLS, got.TLSVersion, !tt.wantErr, tt.wantVersion)
			}
			if got.ServerName != mxName {
				t.Errorf("session ServerName = %q, want %q", got.ServerName, mxName)
			}
		})
	}
}

func TestSMTPUntrustedRecordsSNI(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp sni")
	s := lab.NewSMTP(t, lab.SMTPOptions{Name: mxName}, ca)
	c := dialSMTP(t, s.Addr())
	c.expect(220)
	c.ehlo()
	_, err := c.startTLS(&tls.Config{ServerName: "other.example.test", RootCAs: ca.Pool()})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("handshake: %v, want a x509.HostnameError", err)
	}
	c.conn.Close()
	if got := onlySession(t, s); got.ServerName != "other.example.test" || got.TLS {
		t.Errorf("session = %+v, want ServerName other.example.test and no TLS", got)
	}
}

func TestSMTPHandshakeFails(t *testing.T) {
	t.Parallel()
	s := lab.NewSMTP(t, lab.SMTPOptions{Mode: lab.SMTPHandshakeFails, Name: mxName, ReadTimeout: smtpPatient, WriteTimeout: smtpPatient}, nil)
	c := dialSMTP(t, s.Addr())
	c.expect(220)
	c.ehlo()
	if _, err := c.startTLS(&tls.Config{ServerName: mxName}); err == nil {
		t.Fatal("handshake succeeded, want an error")
	} else if !strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Logf("handshake error: %v", err) // any error will do
	}
	c.conn.Close()
	got := onlySession(t, s)
	if want := []string{"EHLO mailtls.example", "STARTTLS"}; !slices.Equal(got.Commands, want) || got.TLS {
		t.Errorf("session = %+v, want commands %q and no TLS", got, want)
	}
	closesWithin(t, s, 5*time.Second)
}

func TestSMTPPlainAfterSTARTTLS(t *testing.T) {
	t.Parallel()
	s := lab.NewSMTP(t, lab.SMTPOptions{Mode: lab.SMTPPlainAfterSTARTTLS, Name: mxName}, nil)
	c := dialSMTP(t, s.Addr())
	c.expect(220)
	c.ehlo()
	c.send("STARTTLS")
	c.expect(220)
	// The plain-text line follows at once, where TLS should start.
	if code, text := c.reply(); code != 250 || !strings.Contains(text, "plain SMTP") {
		t.Errorf("after the 220: %d %q, want the plain-text line", code, text)
	}
	c.send("QUIT") // read and dropped: no answer
	c.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), smtpTestTimeout)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := onlySession(t, s); got.TLS || !slices.Contains(got.Commands, "QUIT") {
		t.Errorf("session = %+v, want no TLS and the discarded QUIT recorded", got)
	}
}

// TestSMTPGoSMTPClient checks that a real SMTP client library gets through
// STARTTLS.
func TestSMTPGoSMTPClient(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp go-smtp")
	s := lab.NewSMTP(t, lab.SMTPOptions{Name: mxName}, ca)
	conn, err := net.DialTimeout("tcp", s.Addr(), smtpTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: mxName, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	var smtpErr *smtp.SMTPError
	if err := c.Mail("a@example.test", nil); !errors.As(err, &smtpErr) || smtpErr.Code != 550 {
		t.Errorf("MAIL: %v, want a 550 reply", err)
	}
	if st, ok := c.TLSConnectionState(); !ok || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS state %v %#x, want TLS 1.3", ok, st.Version)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	got := onlySession(t, s)
	if want := []string{"EHLO localhost", "STARTTLS", "EHLO localhost", "MAIL FROM:<a@example.test> BODY=8BITMIME", "QUIT"}; !slices.Equal(got.Commands, want) {
		t.Errorf("Commands = %q, want %q", got.Commands, want)
	}
}

// TestSMTPAcceptMail: with AcceptMail the server takes messages over TLS
// (dot-unstuffed, pipelined transactions, RSET), refuses one over the size
// cap, and records each; without it MAIL is refused (TestSMTPGoSMTPClient).
func TestSMTPAcceptMail(t *testing.T) {
	t.Parallel()
	ca := lab.MustCA(t, "smtp accept")
	s := lab.NewSMTP(t, lab.SMTPOptions{Name: mxName, AcceptMail: true}, ca)
	conn, err := net.DialTimeout("tcp", s.Addr(), smtpTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: mxName, RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	send := func(from string, to []string, body string) error {
		t.Helper()
		if err := c.Mail(from, nil); err != nil {
			return err
		}
		for _, r := range to {
			if err := c.Rcpt(r, nil); err != nil {
				return err
			}
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, body); err != nil {
			return err
		}
		return w.Close()
	}
	body := "Subject: one\r\n\r\n.leading dot\r\nend\r\n"
	if err := send("a@sender.test", []string{"b@example.test", "c@example.test"}, body); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := c.Mail("x@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET: %v", err)
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("b", 998)+"\r\n", 1100)
	var smtpErr *smtp.SMTPError
	if err := send("a@sender.test", []string{"b@example.test"}, big); !errors.As(err, &smtpErr) || smtpErr.Code != 552 {
		t.Errorf("a message over 1 MiB: %v, want 552", err)
	}
	if err := send("", []string{"d@example.test"}, "Subject: two\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("second message (null sender): %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	got := onlySession(t, s).Messages
	want := []lab.SMTPMessage{
		{From: "a@sender.test", To: []string{"b@example.test", "c@example.test"}, Data: []byte(body), TLS: true},
		{From: "", To: []string{"d@example.test"}, Data: []byte("Subject: two\r\n\r\nhi\r\n"), TLS: true},
	}
	if len(got) != len(want) {
		t.Fatalf("messages %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].From != want[i].From || !slices.Equal(got[i].To, want[i].To) || !bytes.Equal(got[i].Data, want[i].Data) || got[i].TLS != want[i].TLS {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestSMTPEndless(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode  lab.SMTPMode
		check func(t *testing.T, got []byte)
	}{
		{lab.SMTPEndlessBanner, func(t *testing.T, got []byte) {
			if !bytes.HasPrefix(got, []byte("220 ")) || bytes.ContainsAny(got, "\r\n") {
				t.Errorf("read %q…, want \"220 \" and a line without end", got[:40])
			}
		}},
		{lab.SMTPEndlessMultiline, func(t *testing.T, got []byte) {
			lines := strings.Split(string(got), "\r\n")
			for _, line := range lines[:len(lines)-1] {
				if !strings.HasPrefix(line, "220-") {
					t.Fatalf("line %q, want 220-…", line)
				}
			}
			if len(lines) < 100 {
				t.Errorf("%d lines, want many", len(lines))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			s := lab.NewSMTP(t, lab.SMTPOptions{Mode: tt.mode, Name: mxName, ReadTimeout: smtpPatient, WriteTimeout: smtpPatient}, nil)

			// A client that reads at most 64 KiB and then hangs up.
			c := dialSMTP(t, s.Addr())
			got := make([]byte, 64<<10)
			if _, err := io.ReadFull(c.conn, got); err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
			c.conn.Close()
			waitIdle(t, s) // the server stopped writing

			// A client that stops reading but stays connected: Close
			// still returns at once.
			c = dialSMTP(t, s.Addr())
			if _, err := io.ReadFull(c.conn, got[:10]); err != nil {
				t.Fatal(err)
			}
			closesWithin(t, s, 5*time.Second)
			if got := len(s.Sessions()); got != 2 {
				t.Errorf("%d sessions, want 2", got)
			}
		})
	}
}

func TestSMTPSilent(t *testing.T) {
	t.Parallel()
	for _, mode := range []lab.SMTPMode{lab.SMTPNoBanner, lab.SMTPStallAfterBanner} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			s := lab.NewSMTP(t, lab.SMTPOptions{Mode: mode, Name: mxName, ReadTimeout: smtpPatient, WriteTimeout: smtpPatient}, nil)
			c := dialSMTP(t, s.Addr())
			if mode == lab.SMTPStallAfterBanner {
				c.expect(220)
			}
			c.send("EHLO mailtls.example")
			c.send("QUIT")
			if err := c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			var ne net.Error
			if b, err := c.text.R.ReadByte(); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read %q, %v; want a timeout", b, err)
			}
			c.conn.Close()
			if got, want := onlySession(t, s).Commands, []string{"EHLO mailtls.example", "QUIT"}; !slices.Equal(got, want) {
				t.Errorf("Commands = %q, want %q", got, want)
			}

			// Close ends a stalled session at once.
			c = dialSMTP(t, s.Addr())
			if mode == lab.SMTPStallAfterBanner {
				c.expect(220)
			}
			closesWithin(t, s, 5*time.Second)
			if b, err := c.text.R.ReadByte(); err == nil {
				t.Errorf("read %q after Close, want an error", b)
			}
		})
	}
}

func TestSMTPTimeoutsAndLimits(t *testing.T) {
	t.Parallel()
	s := lab.NewSMTP(t, lab.SMTPOptions{Mode: lab.SMTPNoStartTLS, Name: mxName, ReadTimeout: 100 * time.Millisecond}, nil)
	c := dialSMTP(t, s.Addr())
	c.expect(220)
	if text := c.expect(421); text != "4.4.2 "+mxName+" Error: timeout exceeded" {
		t.Errorf("idle timeout reply %q", text)
	}
	if b, err := c.text.R.ReadByte(); err != io.EOF {
		t.Errorf("after the timeout: read %q, %v; want EOF", b, err)
	}

	s = lab.NewSMTP(t, lab.SMTPOptions{Mode: lab.SMTPNoStartTLS, Name: mxName}, nil)
	c = dialSMTP(t, s.Addr())
	c.expect(220)
	c.cmd(500, "EHLO "+strings.Repeat("x", 3000))
	if b, err := c.text.R.ReadByte(); err == nil {
		t.Errorf("after a long line: read %q, want the connection closed", b)
	}
}

func TestSMTPConcurrency(t *testing.T) {
	t.Parallel()
	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		for _, mode := range []lab.SMTPMode{lab.SMTPNoStartTLS, lab.SMTPBanner421} {
			s := lab.NewSMTP(t, lab.SMTPOptions{Mode: mode}, nil)
			for i := range 30 {
				c := dialSMTP(t, s.Addr())
				code, _ := c.reply()
				if mode == lab.SMTPNoStartTLS && i%2 == 0 {
					c.cmd(221, "QUIT")
				} else if code == 421 {
					c.text.R.ReadByte() // EOF
				}
				c.conn.Close() // the next connection follows at once
			}
			waitIdle(t, s)
			if got := s.MaxConcurrent(); got != 1 {
				t.Errorf("%v: MaxConcurrent() = %d, want 1", mode, got)
			}
			for i, sess := range s.Sessions() {
				if sess.Concurrent != 1 {
					t.Errorf("%v: session %d: Concurrent = %d, want 1", mode, i, sess.Concurrent)
				}
			}
		}
	})
	t.Run("parallel", func(t *testing.T) {
		t.Parallel()
		s := lab.NewSMTP(t, lab.SMTPOptions{Mode: lab.SMTPNoStartTLS}, nil)
		if got := s.MaxConcurrent(); got != 0 {
			t.Errorf("MaxConcurrent() before any session = %d, want 0", got)
		}
		var clients []*smtpClient
		for range 3 {
			c := dialSMTP(t, s.Addr())
			c.expect(220)
			clients = append(clients, c)
		}
		for _, c := range clients {
			c.cmd(221, "QUIT")
		}
		c := dialSMTP(t, s.Addr()) // after the others
		c.expect(220)
		c.cmd(221, "QUIT")
		waitIdle(t, s)
		var got []int
		for _, sess := range s.Sessions() {
			got = append(got, sess.Concurrent)
		}
		if want := []int{1, 2, 3, 1}; !slices.Equal(got, want) {
			t.Errorf("Concurrent = %v, want %v", got, want)
		}
		if got := s.MaxConcurrent(); got != 3 {
			t.Errorf("MaxConcurrent() = %d, want 3", got)
		}
	})
}

func TestSMTPIPv6Listener(t *testing.T) {
	t.Parallel()
	s, err := lab.StartSMTP(lab.SMTPOptions{Mode: lab.SMTPNoStartTLS, Addr: "[::1]:0"}, nil)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer s.Close()
	c := dialSMTP(t, s.Addr())
	if text := c.expect(220); text != "localhost ESMTP mailtls lab" {
		t.Errorf("banner %q", text)
	}
	c.cmd(221, "QUIT")
	if got := onlySession(t, s).Remote; !strings.HasPrefix(got, "[::1]:") {
		t.Errorf("Remote = %q, want [::1]:PORT", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

func TestStartSMTPErrors(t *testing.T) {
	t.Parallel()
	bad := []lab.SMTPOptions{
		{Mode: lab.SMTPStartTLS}, // no certificate and no CA
		{Mode: lab.SMTPMode(99)},
		{Mode: lab.SMTPNoStartTLS, Addr: "256.0.0.1:0"},
	}
	for _, o := range bad {
		if s, err := lab.StartSMTP(o, nil); err == nil {
			s.Close()
			t.Errorf("StartSMTP(%+v) succeeded, want an error", o)
		}
	}
	if got := lab.SMTPMode(99).String(); got != "SMTPMode(99)" {
		t.Errorf("String() = %q", got)
	}
}

func TestLabMX(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	a1, a2 := l.NextAddr(), l.NextAddr()
	mx1 := l.MustMX(t, "MX1.example.test.", []netip.Addr{a1, a2}, lab.SMTPOptions{})
	mx6 := l.MustMX(t, "mx6.example.test", []netip.Addr{l.NextAddr6()}, lab.SMTPOptions{Mode: lab.SMTPNoStartTLS})

	r := l.DNS.NetResolver()
	ips, err := r.LookupNetIP(t.Context(), "ip4", "mx1.example.test")
	slices.SortFunc(ips, netip.Addr.Compare)
	if err != nil || !slices.Equal(ips, []netip.Addr{a1, a2}) {
		t.Errorf("A mx1.example.test = %v, %v; want [%v %v]", ips, err, a1, a2)
	}
	ips, err = r.LookupNetIP(t.Context(), "ip6", "mx6.example.test")
	if err != nil || !slices.Equal(ips, []netip.Addr{netip.IPv6Loopback()}) {
		t.Errorf("AAAA mx6.example.test = %v, %v; want [::1]", ips, err)
	}

	d := l.Dialer()
	for _, a := range []netip.Addr{a1, a2} {
		c := dialSMTP(t, d.Target("mx1.example.test", a, 25))
		if text := c.expect(220); text != "mx1.example.test ESMTP mailtls lab" {
			t.Errorf("%v: banner %q", a, text)
		}
		if !c.ehlo() {
			t.Errorf("%v: no STARTTLS", a)
		}
		if _, err := c.startTLS(&tls.Config{ServerName: "mx1.example.test", RootCAs: l.CA.Pool()}); err != nil {
			t.Errorf("%v: handshake: %v", a, err)
			continue
		}
		c.cmd(221, "QUIT")
	}
	c := dialSMTP(t, d.Target("mx6.example.test", netip.IPv6Loopback(), 25))
	if text := c.expect(220); text != "mx6.example.test ESMTP mailtls lab" {
		t.Errorf("::1: banner %q", text)
	}
	if c.ehlo() {
		t.Error("::1: STARTTLS advertised by a SMTPNoStartTLS server")
	}
	c.cmd(221, "QUIT")

	waitIdle(t, mx1)
	waitIdle(t, mx6)
	if n1, n6 := len(mx1.Sessions()), len(mx6.Sessions()); n1 != 2 || n6 != 1 {
		t.Errorf("sessions: mx1 %d, mx6 %d; want 2 and 1", n1, n6)
	}
	for _, sess := range mx1.Sessions() {
		if !sess.TLS || sess.ServerName != "mx1.example.test" {
			t.Errorf("mx1 session %+v, want TLS with SNI mx1.example.test", sess)
		}
	}

	bad := []struct {
		host  string
		addrs []netip.Addr
	}{
		{"mx7.example.test", []netip.Addr{l.NextAddr6()}}, // ::1:25 is taken
		{"mx7.example.test", []netip.Addr{a1}},            // so is a1:25
		{"mx7.example.test", nil},
		{"mx7.example.test", []netip.Addr{{}}},
		{"", []netip.Addr{l.NextAddr()}},
	}
	for _, tt := range bad {
		if _, err := l.MX(tt.host, tt.addrs, lab.SMTPOptions{}); err == nil {
			t.Errorf("MX(%q, %v) succeeded, want an error", tt.host, tt.addrs)
		}
	}
	a3 := l.NextAddr()
	if _, err := l.MX("mx8.example.test", []netip.Addr{a3, a3}, lab.SMTPOptions{}); err == nil {
		t.Error("MX with an address twice succeeded, want an error")
	}
}

func TestLabCloseClosesMX(t *testing.T) {
	t.Parallel()
	l, err := lab.Start()
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.MX("mx.example.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{Mode: lab.SMTPNoBanner})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	c := dialSMTP(t, s.Addr())
	l.Close()
	if b, err := c.text.R.ReadByte(); err == nil {
		t.Errorf("read %q after the lab closed, want an error", b)
	}
	if _, err := l.MX("mx2.example.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{}); err == nil {
		t.Error("MX on a closed lab succeeded, want an error")
	}
}

// ExampleLab_MX shows an MX host in a lab outside a test.
func ExampleLab_MX() {
	l, err := lab.Start()
	if err != nil {
		panic(err)
	}
	defer l.Close()
	addr := l.NextAddr()
	mx, err := l.MX("mx.example.test", []netip.Addr{addr}, lab.SMTPOptions{Mode: lab.SMTPBanner421})
	if err != nil {
		panic(err)
	}
	conn, err := l.Dialer().Dial(context.Background(), "mx.example.test", addr, 25)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	banner, err := textproto.NewReader(bufio.NewReader(conn)).ReadLine()
	if err != nil {
		panic(err)
	}
	fmt.Println(addr, banner)
	fmt.Println(mx.Mode())
	// Output:
	// 127.0.0.10 421 4.7.0 mx.example.test Too many connections, try again later
	// SMTPBanner421
}
