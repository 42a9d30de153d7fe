package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// MailSink is a mail submission server (RFC 6409) that keeps every message
// it is given, for tests of outgoing mail: verification and reset links,
// alerts. It offers STARTTLS with a certificate of the lab CA for 127.0.0.1
// and localhost, or implicit TLS (RFC 8314 §3.3), and AUTH PLAIN only
// after TLS when Users are set.
type MailSink struct {
	srv  *smtp.Server
	ln   net.Listener
	opts MailSinkOptions
	done chan struct{}

	mu       sync.Mutex
	messages []*SinkMessage
	changed  chan struct{} // closed and replaced at each message
	authFail int
}

// MailSinkOptions configure a MailSink.
type MailSinkOptions struct {
	// Users are the accepted AUTH PLAIN logins (user → password); with
	// none, AUTH is neither offered nor needed.
	Users map[string]string
	// ImplicitTLS serves TLS from the first byte (port 465 style) instead
	// of STARTTLS.
	ImplicitTLS bool
	// NoTLS offers neither STARTTLS nor TLS.
	NoTLS bool
	// Reject, when set, is asked for each recipient; a non-nil error is the
	// reply (an *smtp.SMTPError carries its code: 4xx or 5xx).
	Reject func(to string) error
	// MaxMessageBytes caps a message (default 1 MiB).
	MaxMessageBytes int64
}

// SinkMessage is one message the sink accepted.
type SinkMessage struct {
	From string   // the envelope sender (MAIL FROM)
	To   []string // the envelope recipients
	Data []byte   // the message as received
	// TLS says the message came over TLS; User is the AUTH login ("" when
	// none).
	TLS  bool
	User string
	// Header is the parsed header; Body the decoded text: for a
	// multipart message, its text/plain part.
	Header mail.Header
	Body   string
	// ParseError is set when the message could not be parsed.
	ParseError error
}

// StartMailSink starts a sink on 127.0.0.1:0 with a certificate from ca.
func StartMailSink(o MailSinkOptions, ca *CA) (*MailSink, error) {
	cert, err := ca.Issue(LeafOptions{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = 1 << 20
	}
	s := &MailSink{opts: o, done: make(chan struct{}), changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	s.srv.Domain = "sink.lab.test"
	s.srv.MaxMessageBytes = o.MaxMessageBytes
	s.srv.MaxRecipients = 50
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	if !o.NoTLS {
		s.srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if o.ImplicitTLS {
		ln = tls.NewListener(ln, tc)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

// NewMailSink starts a sink and closes it when the test ends.
func NewMailSink(t testing.TB, o MailSinkOptions, ca *CA) *MailSink {
	t.Helper()
	s, err := StartMailSink(o, ca)
	if err != nil {
		t.Fatalf("lab: mail sink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Addr is the sink's "127.0.0.1:port".
func (s *MailSink) Addr() string { return s.ln.Addr().String() }

// Close stops the sink.
func (s *MailSink) Close() error {
	err := s.srv.Close()
	// Serve may not have registered the listener with the server yet.
	s.ln.Close()
	<-s.done
	return err
}

// Messages returns the messages accepted so far, oldest first.
func (s *MailSink) Messages() []*SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*SinkMessage(nil), s.messages...)
}

// AuthFailures counts refused AUTH attempts.
func (s *MailSink) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Wait returns the first message, after the first skip ones, for which
// match returns true (nil matches any), waiting for it until ctx ends.
func (s *MailSink) Wait(ctx context.Context, skip int, match func(*SinkMessage) bool) (*SinkMessage, error) {
	for {
		s.mu.Lock()
		msgs, changed := s.messages, s.changed
		s.mu.Unlock()
		for i := skip; i < len(msgs); i++ {
			if match == nil || match(msgs[i]) {
				return msgs[i], nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("lab: mail sink: no matching message among %d: %w", len(msgs), ctx.Err())
		}
	}
}

// To matches a message whose envelope or To header names addr.
func To(addr string) func(*SinkMessage) bool {
	return func(m *SinkMessage) bool {
		for _, t := range m.To {
			if strings.EqualFold(t, addr) {
				return true
			}
		}
		return false
	}
}

func (s *MailSink) add(m *SinkMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

type sinkSession struct {
	sink *MailSink
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *sinkSession) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *sinkSession) AuthMechanisms() []string {
	if len(ss.sink.opts.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if want, ok := ss.sink.opts.Users[user]; ok && want == pass && (identity == "" || identity == user) {
			ss.user = user
			return nil
		}
		ss.sink.mu.Lock()
		ss.sink.authFail++
		ss.sink.mu.Unlock()
		return smtp.ErrAuthFailed
	}), nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if len(ss.sink.opts.Users) > 0 && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if r := ss.sink.opts.Reject; r != nil {
		if err := r(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := &SinkMessage{From: ss.from, To: ss.to, Data: data, TLS: ss.tls(), User: ss.user}
	m.Header, m.Body, m.ParseError = parseSinkMessage(data)
	ss.sink.add(m)
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// parseSinkMessage reads the header and the text: the body of a
// single-part message, or the first text/plain part of a multipart one,
// with its transfer encoding undone.
func parseSinkMessage(data []byte) (mail.Header, string, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, "", err
	}
	text, err := textPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0)
	return msg.Header, text, err
}

var errNoText = errors.New("lab: no text/plain part")

// textPart decodes the text/plain content of a part, descending into
// multipart parts (at most a few levels deep).
func textPart(ctype, cte string, body io.Reader, depth int) (string, error) {
	if ctype == "" {
		ctype = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(mt, "multipart/") && depth < 4 {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return "", errNoText
			}
			if err != nil {
				return "", err
			}
			text, err := textPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1)
			if err == nil {
				return text, nil
			}
			if !errors.Is(err, errNoText) {
				return "", err
			}
		}
	}
	if mt != "text/plain" {
		return "", errNoText
	}
	switch strings.ToLower(cte) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	return strings.ReplaceAll(string(b), "\r\n", "\n"), err
}
