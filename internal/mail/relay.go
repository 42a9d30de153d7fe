package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLSMode is how the relay connection is protected.
type TLSMode string

// TLS modes.
const (
	// StartTLS connects in plain text and requires STARTTLS (RFC 3207)
	// before anything else: submission on port 587 (RFC 6409).
	StartTLS TLSMode = "starttls"
	// Implicit speaks TLS from the first byte: submissions on port 465
	// (RFC 8314 §3.3).
	Implicit TLSMode = "tls"
	// None sends in plain text; allowed only to a relay on a loopback
	// address (a local Postfix), where nothing crosses a network.
	None TLSMode = "none"
)

// DefaultTimeout bounds a whole submission (connect, greeting, TLS, AUTH,
// the message, QUIT) unless ctx ends first.
const DefaultTimeout = 30 * time.Second

// Relay submits mail to a relay. Set the fields, then call Send; a Relay
// is safe for concurrent use (each Send is its own connection: account
// and alert mail is rare).
type Relay struct {
	Addr string  // host:port of the relay
	TLS  TLSMode // "" means StartTLS
	// Username and Password log in with SMTP AUTH (RFC 4954) after TLS;
	// an empty Username sends without AUTH (a relay that trusts the
	// address). The strongest mechanism both sides offer is used.
	Username, Password string
	// From is the From address, e.g. "mailtls <noreply@example.com>"; its
	// address is also the envelope sender.
	From string
	// HELO is the name the client greets with ("" means the host name).
	HELO string
	// Timeout bounds a submission (default DefaultTimeout).
	Timeout time.Duration
	// RootCAs verify the relay's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Now dates the messages (default time.Now).
	Now func() time.Time
}

// Check validates the settings.
func (r *Relay) Check() error {
	host, port, err := net.SplitHostPort(r.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("mail: relay %q: want host:port", r.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("mail: relay %q: bad port", r.Addr)
	}
	switch r.TLS {
	case "", StartTLS, Implicit:
	case None:
		if !loopback(host) {
			return fmt.Errorf("mail: relay %q: tls none is allowed only for a relay on a loopback address (links and passwords would cross the network in clear)", r.Addr)
		}
	default:
		return fmt.Errorf("mail: relay tls %q: use starttls, tls or none", r.TLS)
	}
	if r.Username == "" && r.Password != "" {
		return errors.New("mail: a relay password without a username")
	}
	if _, err := mail.ParseAddress(r.From); err != nil {
		return fmt.Errorf("mail: from %q: %v", r.From, err)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send implements Sender. Errors are ErrInvalid for a message that cannot
// be sent, else the relay's refusal or the connection's failure;
// Temporary tells whether trying again later may help.
func (r *Relay) Send(ctx context.Context, m *Message) error {
	if err := m.Check(); err != nil {
		return err
	}
	msg, err := r.build(m)
	if err != nil {
		return err
	}
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: sending to %s through %s: %w", m.To, r.Addr, err)
	}
	return nil
}

// client makes a go-mail client for one submission. Its timeout is the
// shorter of Timeout and what is left of ctx: go-mail applies it to the
// dial and as the connection's deadline.
func (r *Relay) client(ctx context.Context) (*gomail.Client, error) {
	host, portStr, _ := net.SplitHostPort(r.Addr)
	port, _ := strconv.Atoi(portStr)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, ctx.Err()
		}
		timeout = min(timeout, left)
	}
	opts := []gomail.Option{
		gomail.WithPort(port),
		gomail.WithTimeout(timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: host, RootCAs: r.RootCAs, MinVersion: tls.VersionTLS12}),
	}
	switch r.TLS {
	case Implicit:
		opts = append(opts, gomail.WithSSL())
	case None:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if r.HELO != "" {
		opts = append(opts, gomail.WithHELO(r.HELO))
	}
	if r.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(r.Username), gomail.WithPassword(r.Password))
	}
	c, err := gomail.NewClient(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mail: relay %s: %w", r.Addr, err)
	}
	return c, nil
}

// build turns a Message into go-mail's message.
func (r *Relay) build(m *Message) (*gomail.Msg, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(r.From); err != nil {
		return nil, fmt.Errorf("mail: from %q: %v", r.From, err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("%w: recipient %q: %v", ErrInvalid, m.To, err)
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now())
	if m.ID != "" {
		msg.SetMessageIDWithValue(m.ID)
	} else {
		msg.SetMessageID()
	}
	// Mail sent by a program, not a person: no auto-replies (RFC 3834 §5).
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	for k, v := range m.Header {
		msg.SetGenHeader(gomail.Header(textproto.CanonicalMIMEHeaderKey(k)), v)
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// Temporary reports whether sending again later may succeed: a 4xx reply
// (RFC 5321 §4.2.1) or a failed connection. A 5xx reply and ErrInvalid
// are permanent.
func Temporary(err error) bool {
	if err == nil || errors.Is(err, ErrInvalid) {
		return false
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		if code := se.ErrorCode(); code >= 400 {
			return code < 500
		}
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code < 500
	}
	return true
}
