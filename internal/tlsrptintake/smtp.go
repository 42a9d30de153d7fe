package tlsrptintake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// Defaults of the SMTP intake.
const (
	DefaultMessagesPerMinute = 30 // per client address
	DefaultMessageBurst      = 30
	DefaultMaxConns          = 100
	DefaultMaxConnsPerIP     = 10
	DefaultMaxRecipients     = 10
	// DefaultSMTPTimeout is RFC 5321 §4.5.3.2's five minutes between
	// commands; go-smtp sets it before each command, so a whole DATA
	// transfer must fit in it too.
	DefaultSMTPTimeout = 5 * time.Minute
)

// SMTPConfig configures the SMTP intake.
type SMTPConfig struct {
	// Hostname is the name in the greeting and the certificate's name.
	Hostname string
	// Addresses are the report addresses (the mailto: of rua) accepted in
	// RCPT TO; every other recipient is refused: this is no relay.
	Addresses []string
	// TLS, when set, offers STARTTLS (RFC 3207). It is never required:
	// RFC 8460 §3 has senders deliver reports despite TLS failures.
	TLS               *tls.Config
	MaxMessageBytes   int64 // default tlsrptmail.DefaultMaxMessage
	MaxRecipients     int
	MessagesPerMinute float64 // per client address; < 0: no limit
	Burst             int
	MaxConns          int // < 0: no limit
	MaxConnsPerIP     int // < 0: no limit
	Timeout           time.Duration
}

// SMTPServer receives report mail for the configured addresses
// (RFC 8460 §3 mailto:) with github.com/emersion/go-smtp and hands every
// message to the intake.
type SMTPServer struct {
	intake *Intake
	cfg    SMTPConfig
	srv    *smtp.Server
	addrs  map[string]bool

	mu      sync.Mutex
	perIP   map[netip.Addr]int
	open    int
	rates   map[netip.Addr]*client
	sweep   time.Time
	closing bool
}

// NewSMTPServer makes the server; Serve it on listeners.
func NewSMTPServer(in *Intake, cfg SMTPConfig) *SMTPServer {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = tlsrptmail.DefaultMaxMessage
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MessagesPerMinute == 0 {
		cfg.MessagesPerMinute = DefaultMessagesPerMinute
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultMessageBurst
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	s := &SMTPServer{intake: in, cfg: cfg, addrs: map[string]bool{}, perIP: map[netip.Addr]int{}, rates: map[netip.Addr]*client{}}
	for _, a := range cfg.Addresses {
		s.addrs[canonicalAddress(a)] = true
	}
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = 2000 // RFC 5321 §4.5.3.1.6 says 1000; some senders fold late
	srv.ReadTimeout = cfg.Timeout
	srv.WriteTimeout = cfg.Timeout
	srv.TLSConfig = cfg.TLS
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if in.Log != nil {
		srv.ErrorLog = slog.NewLogLogger(in.Log.Handler(), slog.LevelDebug)
	}
	s.srv = srv
	return s
}

// canonicalAddress lower-cases an address's domain and strips <>; the
// local part keeps its case (RFC 5321 §2.4) but is compared without it,
// as nearly every mail system does.
func canonicalAddress(a string) string {
	a = strings.TrimSpace(strings.Trim(strings.TrimSpace(a), "<>"))
	local, dom, ok := strings.Cut(a, "@")
	if !ok {
		return strings.ToLower(a)
	}
	return strings.ToLower(local) + "@" + domain.Canonical(dom)
}

// Serve accepts connections on l until Shutdown.
func (s *SMTPServer) Serve(l net.Listener) error {
	err := s.srv.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for sessions in flight until ctx
// ends, then closes them.
func (s *SMTPServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// limitListener refuses connections beyond the total and per-address
// limits with a 421 greeting (RFC 5321 §3.8) and closes them.
type limitListener struct {
	net.Listener
	s *SMTPServer
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		if l.s.admit(ip) {
			return &limitConn{Conn: c, s: l.s, ip: ip}, nil
		}
		l.s.intake.Metrics.received(ChannelSMTP, "connection_refused")
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "421 4.7.0 "+l.s.cfg.Hostname+" too many connections, try again later\r\n")
		c.Close()
	}
}

type limitConn struct {
	net.Conn
	s    *SMTPServer
	ip   netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.s.release(c.ip) })
	return c.Conn.Close()
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *SMTPServer) admit(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || (s.cfg.MaxConns > 0 && s.open >= s.cfg.MaxConns) || (s.cfg.MaxConnsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnsPerIP) {
		return false
	}
	s.open++
	s.perIP[ip]++
	return true
}

func (s *SMTPServer) release(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// allowMessage takes a message token for ip.
func (s *SMTPServer) allowMessage(ip netip.Addr) bool {
	if s.cfg.MessagesPerMinute < 0 {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.sweep) > time.Minute {
		for k, c := range s.rates {
			if now.Sub(c.seen) > 10*time.Minute {
				delete(s.rates, k)
			}
		}
		s.sweep = now
	}
	c := s.rates[ip]
	if c == nil {
		c = &client{lim: rate.NewLimiter(rate.Limit(s.cfg.MessagesPerMinute/60), s.cfg.Burst)}
		s.rates[ip] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// NewSession implements smtp.Backend.
func (s *SMTPServer) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, ip: addrOf(c.Conn().RemoteAddr())}, nil
}

type session struct {
	s    *SMTPServer
	ip   netip.Addr
	from string
	rcpt int
}

var (
	errRate = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many messages from this address; try again later"}
	errRcpt = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such report address here"}
	errTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "the report could not be stored just now; try again later"}
)

func (ss *session) Reset()        { ss.from, ss.rcpt = "", 0 }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.s.allowMessage(ss.ip) {
		ss.s.intake.Metrics.received(ChannelSMTP, "rate_limited")
		return errRate
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.s.addrs[canonicalAddress(to)] {
		return errRcpt
	}
	ss.rcpt++
	return nil
}

// Data reads the message and hands it to the intake. A mail without a
// report is refused with the reason (tlsrpt-landscape.md §5.2 A-8); one
// whose DKIM key could not be looked up is deferred (451), so the sender
// tries again (RFC 8460 §5.5); every other report is accepted, whether it
// counts, is ignored or is held — the answer never says which.
func (ss *session) Data(r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			ss.s.intake.log().Error("panic taking a TLS-RPT mail", "panic", fmt.Sprint(p))
			err = errTemp
		}
	}()
	raw, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			ss.s.intake.Metrics.received(ChannelSMTP, "refused")
		}
		return err // go-smtp answers 552 for a message past MaxMessageBytes
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStoreTimeout)
	defer cancel()
	_, err = ss.s.intake.Mail(ctx, raw, Source{Channel: ChannelSMTP, ClientIP: ss.ip.String()})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTemporary):
		return errTemp
	case errors.Is(err, tlsrptmail.ErrTooLarge):
		return smtp.ErrDataTooLarge
	default:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: refusal(err)}
	}
}

// refusal is a one-line reason for a refused mail: what the intake said,
// cut short and without control characters (it may quote the mail).
func refusal(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, tlsrptmail.ErrNoReport):
		msg = "no TLS-RPT report found in the message"
	case errors.Is(err, tlsrptmail.ErrNotMessage):
		msg = "not a mail message"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
}
