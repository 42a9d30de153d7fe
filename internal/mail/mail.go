// Package mail sends the server's own mail — account links (verification,
// password reset, invitations) and alerts — through a configured relay:
// message submission (RFC 6409) with STARTTLS (RFC 3207) and SMTP AUTH
// (RFC 4954), or implicit TLS (RFC 8314 §3.3), with
// github.com/wneessen/go-mail (net/smtp is frozen).
//
// Everything that sends mail takes a Sender, so tests and a server without
// a relay can swap the transport: Relay submits to the relay, Log writes
// the message to the server's log instead.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
)

// Message is one mail to one recipient. From, Date, Message-ID,
// MIME-Version and the content headers are set by the Sender.
type Message struct {
	To      string // one address, e.g. "ann@example.com" or "Ann <ann@example.com>"
	Subject string
	Text    string // the text/plain body (UTF-8); required
	HTML    string // an optional text/html alternative
	// Header holds extra header fields such as List-Unsubscribe and
	// List-Unsubscribe-Post (RFC 8058) or List-Id; names must not be ones
	// the Sender sets.
	Header map[string]string
	// ID is the Message-ID without angle brackets ("" makes a new one); an
	// outbox sets it so that a message sent twice after a crash can be
	// recognised by the receiver.
	ID string
}

// Sender sends messages. Send returns after the relay accepted the
// message (or refused it); it honours ctx. Implementations are safe for
// concurrent use.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// ErrInvalid is a message that cannot be sent as it is (bad address, a
// line break in a header, a reserved header name); sending it again will
// not help.
var ErrInvalid = errors.New("mail: invalid message")

// reserved are the header fields the Sender writes itself.
var reserved = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "subject": true, "date": true, "message-id": true,
	"mime-version": true, "content-type": true, "content-transfer-encoding": true, "sender": true,
	"return-path": true, "auto-submitted": true,
}

// Check validates a message: one recipient address, no line breaks in
// header values (header injection), header names that are RFC 5322 §3.6.8
// field names and not reserved, a text body.
func (m *Message) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if m == nil {
		return bad("no message")
	}
	if _, err := mail.ParseAddress(m.To); err != nil || strings.ContainsAny(m.To, ",;") {
		return bad("recipient %q: not one mail address", m.To)
	}
	if m.Text == "" {
		return bad("no text body")
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return bad("line break in the subject")
	}
	if strings.ContainsAny(m.ID, "<>\r\n \t") || (m.ID != "" && !strings.Contains(m.ID, "@")) {
		return bad("message id %q: want left@right without brackets", m.ID)
	}
	for k, v := range m.Header {
		if !fieldName(k) {
			return bad("header name %q", k)
		}
		if reserved[strings.ToLower(k)] {
			return bad("header %s is set by the sender", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return bad("line break in header %s", k)
		}
	}
	return nil
}

// fieldName reports whether s is a header field name: printable US-ASCII
// except colon (RFC 5322 §3.6.8).
func fieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// Log is the Sender of a server without a relay: it writes each message,
// links included, to the log, so that an administrator running mailtls
// locally can follow a verification link. A public server needs a relay
// (docs/web.md).
type Log struct {
	Logger *slog.Logger
}

// Send implements Sender.
func (l Log) Send(ctx context.Context, m *Message) error {
	if err := m.Check(); err != nil {
		return err
	}
	lg := l.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg.LogAttrs(ctx, slog.LevelWarn, "mail not sent (no mail relay configured); here it is",
		slog.String("to", m.To), slog.String("subject", m.Subject), slog.String("text", m.Text))
	return nil
}
