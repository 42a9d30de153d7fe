package mail

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"mime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/lab"
)

func relayFor(s *lab.MailSink, ca *lab.CA) *Relay {
	return &Relay{Addr: s.Addr(), Username: "mailtls", Password: "s3cret", From: "mailtls <noreply@example.test>",
		RootCAs: ca.Pool(), Timeout: 5 * time.Second, HELO: "checker.example.test"}
}

func waitOne(t *testing.T, s *lab.MailSink) *lab.SinkMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := s.Wait(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Submission with STARTTLS and AUTH (RFC 6409, RFC 3207, RFC 4954): the
// message arrives over TLS, logged in, with the headers we set.
func TestRelayStartTLSAuth(t *testing.T) {
	ca := lab.MustCA(t, "mail test")
	sink := lab.NewMailSink(t, lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"}}, ca)
	r := relayFor(sink, ca)
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	m := &Message{To: "ann@example.test", Subject: "Confirm your address ✓", Text: "Open this link:\nhttps://check.example.test/verify?token=abc\n",
		Header: map[string]string{"List-Unsubscribe": "<https://check.example.test/u/1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
		ID:     "42.alert@check.example.test"}
	if err := r.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, sink)
	if !got.TLS || got.User != "mailtls" {
		t.Errorf("TLS %v, user %q: want TLS and the AUTH login", got.TLS, got.User)
	}
	if got.From != "noreply@example.test" || len(got.To) != 1 || got.To[0] != "ann@example.test" {
		t.Errorf("envelope %q → %q", got.From, got.To)
	}
	if got.ParseError != nil {
		t.Fatal(got.ParseError)
	}
	h := got.Header
	for k, want := range map[string]string{
		"List-Unsubscribe": "<https://check.example.test/u/1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Message-Id": "<42.alert@check.example.test>", "Auto-Submitted": "auto-generated",
	} {
		if h.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, h.Get(k), want)
		}
	}
	if subj, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); err != nil || subj != m.Subject {
		t.Errorf("Subject %q (%v), want %q", subj, err, m.Subject)
	}
	if !strings.Contains(got.Body, "https://check.example.test/verify?token=abc") {
		t.Errorf("body lost the link:\n%s", got.Body)
	}
	if h.Get("Date") == "" || !strings.Contains(h.Get("From"), "noreply@example.test") {
		t.Errorf("From %q, Date %q", h.Get("From"), h.Get("Date"))
	}
}

// Implicit TLS (RFC 8314 §3.3) with an HTML alternative: the text part is
// still there.
func TestRelayImplicitTLS(t *testing.T) {
	ca := lab.MustCA(t, "mail test")
	sink := lab.NewMailSink(t, lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"}, ImplicitTLS: true}, ca)
	r := relayFor(sink, ca)
	r.TLS = Implicit
	if err := r.Send(context.Background(), &Message{To: "ann@example.test", Subject: "s", Text: "plain words", HTML: "<p>html words</p>"}); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, sink)
	if !got.TLS || got.Body != "plain words" {
		t.Errorf("TLS %v, body %q", got.TLS, got.Body)
	}
	if !bytes.Contains(got.Data, []byte("text/html")) {
		t.Error("no HTML alternative")
	}
}

// The relay's refusals and failures, and which of them are worth another
// try later.
func TestRelayFailures(t *testing.T) {
	ca := lab.MustCA(t, "mail test")
	other := lab.MustCA(t, "someone else")
	cases := []struct {
		name      string
		sink      lab.MailSinkOptions
		ca        *lab.CA
		password  string
		temporary bool
		want      string
	}{
		// STARTTLS is required: a relay that does not offer it gets
		// nothing, not even the login (RFC 3207 §4, RFC 8314 §3).
		{name: "no STARTTLS", sink: lab.MailSinkOptions{NoTLS: true, Users: map[string]string{"mailtls": "s3cret"}}, ca: ca, password: "s3cret", temporary: true, want: "STARTTLS"},
		{name: "no STARTTLS, no AUTH", sink: lab.MailSinkOptions{NoTLS: true}, ca: ca, temporary: true, want: "STARTTLS"},
		{name: "untrusted certificate", sink: lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"}}, ca: other, password: "s3cret", temporary: true, want: "certificate"},
		{name: "wrong password", sink: lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"}}, ca: ca, password: "wrong", temporary: false, want: "535"},
		{name: "mailbox full 452", ca: ca, sink: lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"},
			Reject: func(string) error { return &smtp.SMTPError{Code: 452, Message: "mailbox full"} }}, password: "s3cret", temporary: true, want: "452"},
		{name: "no such user 550", ca: ca, sink: lab.MailSinkOptions{Users: map[string]string{"mailtls": "s3cret"},
			Reject: func(string) error { return &smtp.SMTPError{Code: 550, Message: "no such user"} }}, password: "s3cret", temporary: false, want: "550"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := lab.NewMailSink(t, c.sink, ca)
			r := relayFor(sink, c.ca)
			r.Password = c.password
			if c.password == "" {
				r.Username = ""
			}
			err := r.Send(context.Background(), &Message{To: "ann@example.test", Subject: "s", Text: "t"})
			if err == nil {
				t.Fatal("sent")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if Temporary(err) != c.temporary {
				t.Errorf("Temporary(%v) = %v, want %v", err, !c.temporary, c.temporary)
			}
			if n := len(sink.Messages()); n != 0 {
				t.Errorf("%d messages arrived", n)
			}
		})
	}
}

// A relay that accepts the connection and never speaks: the send ends at
// its deadline, and at once when ctx is already over.
func TestRelayStall(t *testing.T) {
	stall := lab.NewStall(t)
	r := &Relay{Addr: stall.Addr(), From: "noreply@example.test", Timeout: 500 * time.Millisecond}
	start := time.Now()
	err := r.Send(context.Background(), &Message{To: "ann@example.test", Text: "t"})
	if err == nil || !Temporary(err) {
		t.Fatalf("err %v, want a temporary failure", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s with a 500ms timeout", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	if err := r.Send(ctx, &Message{To: "ann@example.test", Text: "t"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: %v", err)
	}
}

// Header injection and other messages that cannot be sent are refused
// before any connection, as permanent errors.
func TestMessageCheck(t *testing.T) {
	ok := Message{To: "ann@example.test", Subject: "s", Text: "t"}
	cases := map[string]func(*Message){
		"two recipients":       func(m *Message) { m.To = "ann@example.test, bob@example.test" },
		"no address":           func(m *Message) { m.To = "ann" },
		"subject line break":   func(m *Message) { m.Subject = "hi\r\nBcc: victim@example.test" },
		"header value break":   func(m *Message) { m.Header = map[string]string{"List-Id": "x\nBcc: victim@example.test"} },
		"header name colon":    func(m *Message) { m.Header = map[string]string{"Bcc:": "x"} },
		"reserved header":      func(m *Message) { m.Header = map[string]string{"bcc": "victim@example.test"} },
		"reserved From":        func(m *Message) { m.Header = map[string]string{"From": "ceo@example.test"} },
		"empty body":           func(m *Message) { m.Text = "" },
		"message id brackets":  func(m *Message) { m.ID = "<x@y>" },
		"message id no domain": func(m *Message) { m.ID = "x" },
	}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	ca := lab.MustCA(t, "mail test")
	sink := lab.NewMailSink(t, lab.MailSinkOptions{}, ca)
	r := &Relay{Addr: sink.Addr(), From: "noreply@example.test", RootCAs: ca.Pool()}
	for name, change := range cases {
		m := ok
		change(&m)
		err := r.Send(context.Background(), &m)
		if !errors.Is(err, ErrInvalid) || Temporary(err) {
			t.Errorf("%s: %v, want a permanent ErrInvalid", name, err)
		}
	}
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d messages arrived", n)
	}
}

func TestRelayCheck(t *testing.T) {
	good := Relay{Addr: "smtp.example.test:587", From: "mailtls <noreply@example.test>"}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Relay){
		"no port":               func(r *Relay) { r.Addr = "smtp.example.test" },
		"port 0":                func(r *Relay) { r.Addr = "smtp.example.test:0" },
		"bad tls":               func(r *Relay) { r.TLS = "ssl" },
		"plain text off-host":   func(r *Relay) { r.TLS = None },
		"password without user": func(r *Relay) { r.Password = "x" },
		"bad from":              func(r *Relay) { r.From = "not an address" },
	} {
		r := good
		change(&r)
		if err := r.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	local := Relay{Addr: "127.0.0.1:25", TLS: None, From: "noreply@example.test"}
	if err := local.Check(); err != nil {
		t.Errorf("plain text to a loopback relay: %v", err)
	}
}

// Log writes the message, link included, to the log.
func TestLog(t *testing.T) {
	var b bytes.Buffer
	l := Log{Logger: slog.New(slog.NewTextHandler(&b, nil))}
	if err := l.Send(context.Background(), &Message{To: "ann@example.test", Subject: "Confirm", Text: "https://x.test/verify?token=1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "https://x.test/verify?token=1") || !strings.Contains(b.String(), "ann@example.test") {
		t.Errorf("log: %s", b.String())
	}
	if err := l.Send(context.Background(), &Message{To: "x", Text: "t"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad message: %v", err)
	}
}
