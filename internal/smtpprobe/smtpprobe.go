// Package smtpprobe connects to an MX host on port 25 the way a sending MTA
// does before it hands over mail (RFC 5321, RFC 3207): it reads the banner,
// says EHLO, asks for STARTTLS, completes the TLS handshake with SNI set to
// the MX host name, and says QUIT. It never sends MAIL, RCPT or DATA. The
// result is evidence: the transcript, what failed and in which phase, the
// TLS version and cipher, the presented chain (DER) and its WebPKI verdict
// for the MX host name (RFC 8461 §4.2).
//
// Each phase has its own deadline (connect, banner, command, handshake) and
// everything read from the server is capped, so a hostile server (no
// banner, an endless banner, a stalled handshake) costs bounded time and
// memory. The client is written on net/textproto rather than
// github.com/emersion/go-smtp because go-smtp reads the greeting and EHLO
// under one timeout and performs the TLS handshake lazily inside the next
// command, so a probe could neither time nor classify those phases apart.
package smtpprobe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/webpki"
)

// Default phase timeouts. A sender waits minutes (RFC 5321 §4.5.3.2); a
// scanner that probes many hosts waits less and says so.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultBannerTimeout    = 20 * time.Second
	DefaultCommandTimeout   = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	// quitTimeout bounds the wait for the reply to QUIT.
	quitTimeout = time.Second
	// MaxRead caps everything read from one server, TLS handshake included.
	MaxRead = 256 << 10
	// maxTranscript caps the lines kept, and each line's length; the EHLO
	// keywords kept are capped the same way.
	maxTranscript     = 60
	maxTranscriptLine = 200
)

// Class says where a probe stopped.
type Class string

// Failure classes, in the order of the phases.
const (
	ConnectRefused Class = "connect-refused"
	ConnectTimeout Class = "connect-timeout"
	ConnectError   Class = "connect-error"
	// ConnectBlocked: a guarded scan (the web checker) did not connect,
	// because the address is not a public one (dial.Guard).
	ConnectBlocked     Class = "connect-blocked"
	BannerTimeout      Class = "banner-timeout"   // connected, no banner
	BannerClosed       Class = "banner-closed"    // closed before or during the banner
	BannerTemporary    Class = "banner-temporary" // 4xx banner: greylisting, rate limits, scanner blocking
	BannerPermanent    Class = "banner-permanent" // 5xx banner
	BannerMalformed    Class = "banner-malformed" // not an SMTP reply, or too long
	EHLOFailed         Class = "ehlo-failed"      // EHLO and HELO refused, or the server stalled after the banner
	STARTTLSNotOffered Class = "starttls-not-offered"
	STARTTLSRefused    Class = "starttls-refused"
	TLSHandshake       Class = "tls-handshake"
	TLSTimeout         Class = "tls-timeout"
	// TLSPlaintext: the server answered STARTTLS with 220 and then sent
	// bytes that are not a TLS record (plain text): it never speaks TLS.
	TLSPlaintext Class = "tls-plaintext"

	// The classes below say nothing about the server: the scan stopped
	// looking, or never looked.

	// CutOff: the scan's time budget ran out (or the scan was interrupted)
	// during the probe, before the phase's own deadline.
	CutOff Class = "cut-off"
	// NotProbedBudget: the budget ran out while the probe waited for its
	// turn (see package scan); nothing was sent to the address.
	NotProbedBudget Class = "not-probed-budget"
	// NotProbedLimit: the host has more addresses than a scan probes.
	NotProbedLimit Class = "not-probed-limit"
)

// Observed reports whether a probe of this class saw the server: false for
// the classes that only say that the scan did not look (or stopped).
func (c Class) Observed() bool {
	return c != CutOff && c != NotProbedBudget && c != NotProbedLimit
}

// NotProbed is the Result for an address the scan did not connect to; c
// (NotProbedBudget or NotProbedLimit) and why say why.
func NotProbed(host string, ip netip.Addr, c Class, why string, now time.Time) *Result {
	return &Result{Host: host, Address: netip.AddrPortFrom(ip, 25).String(), Class: c, Error: why, StartedAt: now.UTC(), Transcript: []string{}}
}

// Result is everything observed probing one address of an MX host.
type Result struct {
	Host       string    `json:"host"`
	Address    string    `json:"address"`          // ip:25
	Dialed     string    `json:"dialed,omitempty"` // where the connection really went (connect-to)
	Class      Class     `json:"failure,omitempty"`
	Error      string    `json:"error,omitempty"`
	BannerCode int       `json:"banner_code,omitempty"`
	Banner     string    `json:"banner,omitempty"`
	EHLOName   string    `json:"ehlo_name,omitempty"`
	Extensions []string  `json:"extensions,omitempty"` // EHLO keywords before STARTTLS
	STARTTLS   bool      `json:"starttls"`             // offered in the EHLO reply
	TLS        *TLS      `json:"tls,omitempty"`
	Transcript []string  `json:"transcript"`
	Timings    Timings   `json:"timings_ms"`
	StartedAt  time.Time `json:"started_at"`
}

// TLS is the TLS evidence of a probe.
type TLS struct {
	Version string         `json:"version"`
	Cipher  string         `json:"cipher"`
	Chain   []webpki.Cert  `json:"chain"`
	DER     [][]byte       `json:"der"`     // the presented certificates, for DANE checks and replay
	Verdict webpki.Verdict `json:"verdict"` // WebPKI verdict for the MX host name
}

// Certificates parses the presented chain.
func (t *TLS) Certificates() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, der := range t.DER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Timings are milliseconds from the start of the probe.
type Timings struct {
	Connect   float64 `json:"connect"`
	Banner    float64 `json:"banner"`
	EHLO      float64 `json:"ehlo"`
	Handshake float64 `json:"handshake"`
	Total     float64 `json:"total"`
}

// Prober probes MX hosts. The zero value works with system roots and the
// default timeouts.
type Prober struct {
	Dialer *dial.Dialer
	Roots  *x509.CertPool // nil: system roots
	Now    func() time.Time
	// EHLO is the name to greet with; "" means the address literal of the
	// local end of the connection (RFC 5321 §4.1.4), which needs no DNS.
	EHLO             string
	ConnectTimeout   time.Duration
	BannerTimeout    time.Duration
	CommandTimeout   time.Duration
	HandshakeTimeout time.Duration
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// probe is the state of one probe.
type probe struct {
	*Prober
	r     *Result
	ctx   context.Context
	conn  net.Conn
	br    *bufio.Reader // under text: what the server sent and was not read yet
	text  *textproto.Reader
	start time.Time
	// mu orders setDeadline against the cancellation of ctx.
	mu sync.Mutex
}

// pastDeadline is the deadline a canceled probe's connection keeps: every
// read and write on it fails at once.
var pastDeadline = time.Unix(1, 0)

// setDeadline sets the connection's deadline, unless ctx has ended: then
// the connection keeps a deadline in the past, so that no later phase
// re-arms a connection the caller gave up on.
func (s *probe) setDeadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		t = pastDeadline
	}
	_ = s.conn.SetDeadline(t)
}

func (s *probe) ms() float64 { return float64(time.Since(s.start).Microseconds()) / 1000 }

func (s *probe) fail(c Class, format string, args ...any) *Result {
	s.r.Class, s.r.Error = c, fmt.Sprintf(format, args...)
	return s.r
}

func (s *probe) log(dir, line string) {
	if len(s.r.Transcript) >= maxTranscript {
		return
	}
	if len(line) > maxTranscriptLine {
		line = line[:maxTranscriptLine] + "…"
	}
	s.r.Transcript = append(s.r.Transcript, dir+line)
}

// deadline sets the connection deadline for a phase, within ctx's.
func (s *probe) deadline(d time.Duration) {
	t := time.Now().Add(d)
	if cd, ok := s.ctx.Deadline(); ok && cd.Before(t) {
		t = cd
	}
	s.setDeadline(t)
}

// Probe probes host at ip:25. It never returns nil and never panics on
// hostile input.
func (p *Prober) Probe(ctx context.Context, host string, ip netip.Addr) *Result {
	s := &probe{Prober: p, ctx: ctx, start: time.Now(),
		r: &Result{Host: host, Address: netip.AddrPortFrom(ip, 25).String(), StartedAt: p.now().UTC(), Transcript: []string{}}}
	defer func() { s.r.Timings.Total = s.ms() }()
	if target := p.Dialer.Target(host, ip, 25); target != s.r.Address {
		s.r.Dialed = target
	}

	cctx, cancel := context.WithTimeout(ctx, or(p.ConnectTimeout, DefaultConnectTimeout))
	conn, err := p.Dialer.Dial(cctx, host, ip, 25)
	cancel()
	if err != nil {
		if r := s.cutOff(err, "the connection"); r != nil {
			return r
		}
		c, detail := classifyConnect(ctx, err)
		return s.fail(c, "%s", detail)
	}
	s.r.Timings.Connect = s.ms()
	s.conn = &capConn{Conn: conn, left: MaxRead}
	defer func() { s.conn.Close() }()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = conn.SetDeadline(pastDeadline)
	})
	defer stop()
	s.br = bufio.NewReader(s.conn)
	s.text = textproto.NewReader(s.br)

	// Banner (RFC 5321 §4.3.1: 220 or 554).
	s.deadline(or(p.BannerTimeout, DefaultBannerTimeout))
	code, msg, err := s.read()
	s.r.Timings.Banner = s.ms()
	s.r.BannerCode, s.r.Banner = code, firstLine(msg)
	if r := s.cutOff(err, "the banner"); r != nil && code == 0 {
		return r
	}
	switch {
	case err != nil && code == 0:
		return s.fail(classifyRead(err, BannerTimeout, BannerClosed, BannerMalformed, "the banner"))
	case code >= 400 && code < 500:
		return s.fail(BannerTemporary, "the server answered %d %s instead of a 220 banner; servers do this to greylist or to turn away scanners, so it is not proof of a fault", code, firstLine(msg))
	case code >= 500:
		return s.fail(BannerPermanent, "the server answered %d %s instead of a 220 banner", code, firstLine(msg))
	case code != 220:
		return s.fail(BannerMalformed, "the banner has the unexpected code %d", code)
	}

	// EHLO, falling back to HELO (RFC 5321 §4.1.1.1, §3.2).
	name := p.EHLO
	if name == "" {
		name = addressLiteral(conn.LocalAddr())
	}
	s.r.EHLOName = name
	code, msg, err = s.cmd("EHLO " + name)
	if code == 500 || code == 502 {
		code, msg, err = s.cmd("HELO " + name)
	}
	s.r.Timings.EHLO = s.ms()
	if err != nil || code != 250 {
		if code == 0 {
			if r := s.cutOff(err, "the EHLO reply"); r != nil {
				return r
			}
			c, detail := classifyRead(err, EHLOFailed, EHLOFailed, EHLOFailed, "the EHLO reply")
			return s.fail(c, "%s (the server sent its banner, then stopped answering)", detail)
		}
		return s.fail(EHLOFailed, "the server refused EHLO and HELO: %d %s", code, firstLine(msg))
	}
	for _, line := range strings.Split(msg, "\n")[1:] {
		kw := strings.ToUpper(strings.Fields(line + " x")[0])
		if kw == "STARTTLS" {
			s.r.STARTTLS = true
		}
		if len(s.r.Extensions) < maxTranscript {
			s.r.Extensions = append(s.r.Extensions, capLine(kw))
		}
	}
	if !s.r.STARTTLS {
		s.quit()
		return s.fail(STARTTLSNotOffered, "the EHLO reply does not offer STARTTLS")
	}

	// STARTTLS (RFC 3207 §4).
	code, msg, err = s.cmd("STARTTLS")
	if err != nil && code == 0 {
		if r := s.cutOff(err, "the STARTTLS reply"); r != nil {
			return r
		}
		c, detail := classifyRead(err, STARTTLSRefused, STARTTLSRefused, STARTTLSRefused, "the STARTTLS reply")
		return s.fail(c, "%s", detail)
	}
	if code != 220 {
		s.quit()
		return s.fail(STARTTLSRefused, "the server offers STARTTLS but answered the command with %d %s", code, firstLine(msg))
	}
	// After the 220 the server must wait for the ClientHello (RFC 3207
	// §4); bytes it already sent are plain text, not TLS.
	if n := s.br.Buffered(); n > 0 {
		early, _ := s.br.Peek(min(n, maxTranscriptLine))
		s.log("S: ", strings.TrimRight(string(early), "\r\n"))
		return s.fail(TLSPlaintext, "the server answered STARTTLS with 220 but then sent plain text instead of starting TLS: %q", firstLine(string(early)))
	}
	sniff := &tlsSniffConn{Conn: s.conn}
	tc := tls.Client(sniff, &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, // verified below, so that every problem is recorded and classified
		MinVersion:         tls.VersionTLS10,
	})
	hctx, cancel := context.WithTimeout(ctx, or(p.HandshakeTimeout, DefaultHandshakeTimeout))
	s.setDeadline(time.Time{}) // the handshake has its own deadline, hctx
	err = tc.HandshakeContext(hctx)
	cancel()
	s.r.Timings.Handshake = s.ms()
	if err != nil {
		if sniff.plain != nil {
			s.log("S: ", strings.TrimRight(string(sniff.plain), "\r\n"))
			return s.fail(TLSPlaintext, "the server answered STARTTLS with 220 but replied to the TLS ClientHello in plain text: %q", firstLine(string(sniff.plain)))
		}
		if r := s.cutOff(err, "the TLS handshake"); r != nil {
			return r
		}
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return s.fail(TLSTimeout, "the TLS handshake did not finish in time")
		}
		return s.fail(TLSHandshake, "the TLS handshake failed: %v", err)
	}
	st := tc.ConnectionState()
	s.r.TLS = &TLS{
		Version: tls.VersionName(st.Version),
		Cipher:  tls.CipherSuiteName(st.CipherSuite),
		Chain:   webpki.Describe(st.PeerCertificates),
		Verdict: webpki.Verify(st.PeerCertificates, host, p.Roots, p.now()),
	}
	for _, c := range st.PeerCertificates {
		s.r.TLS.DER = append(s.r.TLS.DER, c.Raw)
	}
	s.log("", "(TLS "+s.r.TLS.Version+" "+s.r.TLS.Cipher+")")

	// A second EHLO over TLS (RFC 3207 §4.2) shows the session works; then
	// leave politely. Failures here do not change the verdict.
	s.conn, s.br = tc, bufio.NewReader(tc)
	s.text = textproto.NewReader(s.br)
	if code, _, err := s.cmd("EHLO " + name); err == nil && code == 250 {
		s.quit()
	}
	return s.r
}

// cutOff is the Result when err is the probe's context ending (the scan's
// time budget, or an interrupt) rather than the server's doing: a phase
// deadline is capped by the context's, so a phase cut short says nothing
// about the server. It returns nil for any other error.
func (s *probe) cutOff(err error, what string) *Result {
	if err == nil || !Ended(s.ctx) {
		return nil
	}
	if !isTimeout(err) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return nil
	}
	why := "the scan's time budget ran out"
	if errors.Is(s.ctx.Err(), context.Canceled) {
		why = "the scan was interrupted"
	}
	return s.fail(CutOff, "%s while waiting for %s; this says nothing about the server", why, what)
}

// Ended reports whether ctx is done or its deadline has passed. An I/O
// deadline set from the context's fires at the same instant as the
// context's own timer, so a timeout may be seen before ctx.Err() is set.
func Ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// read reads one (possibly multi-line) reply and logs it.
func (s *probe) read() (int, string, error) {
	code, msg, err := s.text.ReadResponse(0)
	if code != 0 || msg != "" {
		for _, line := range strings.Split(msg, "\n") {
			s.log("S: ", fmt.Sprintf("%d %s", code, line))
		}
	}
	var perr textproto.ProtocolError
	if errors.As(err, &perr) {
		return 0, msg, err
	}
	if _, ok := err.(*textproto.Error); ok {
		err = nil // ReadResponse(0) does not expect a code; a code is not an error here
	}
	return code, msg, err
}

// cmd sends one command line and reads the reply within the command timeout.
func (s *probe) cmd(line string) (int, string, error) {
	return s.cmdWithin(line, or(s.CommandTimeout, DefaultCommandTimeout))
}

func (s *probe) cmdWithin(line string, d time.Duration) (int, string, error) {
	s.deadline(d)
	s.log("C: ", line)
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return 0, "", err
	}
	return s.read()
}

// quit says goodbye without waiting long for the answer: the verdict is
// already made.
func (s *probe) quit() {
	s.cmdWithin("QUIT", quitTimeout)
}

// capConn fails reads once MaxRead bytes have been read.
type capConn struct {
	net.Conn
	left int
}

var errTooMuch = errors.New("the server sent more than 256 KiB")

func (c *capConn) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errTooMuch
	}
	if len(b) > c.left {
		b = b[:c.left]
	}
	n, err := c.Conn.Read(b)
	c.left -= n
	return n, err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return capLine(line)
}

func capLine(line string) string {
	if len(line) > maxTranscriptLine {
		line = line[:maxTranscriptLine] + "…"
	}
	return line
}

// errPlaintext stops a handshake whose first byte from the server is not a
// TLS record type.
var errPlaintext = errors.New("the server's reply is not a TLS record")

// tlsSniffConn checks the first byte the server sends in the TLS
// handshake: a server's first record is a handshake (22) or an alert (21)
// (RFC 8446 §5.1, RFC 5246 §6.2.1). crypto/tls would wait for a whole
// 5-byte record header first, so a short plain-text reply such as "OK\r\n"
// would only end in the handshake timeout; this fails at once and keeps
// what was read for the report.
type tlsSniffConn struct {
	net.Conn
	seen  bool
	plain []byte
}

func (c *tlsSniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.seen || n == 0 {
		return n, err
	}
	c.seen = true
	if b[0] != 21 && b[0] != 22 {
		c.plain = append([]byte(nil), b[:min(n, maxTranscriptLine)]...)
		return 0, errPlaintext
	}
	return n, err
}

// addressLiteral is the EHLO argument for a local address (RFC 5321
// §4.1.3).
func addressLiteral(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "[127.0.0.1]"
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func classifyConnect(ctx context.Context, err error) (Class, string) {
	var blocked *dial.BlockedError
	switch {
	case errors.As(err, &blocked):
		return ConnectBlocked, blocked.Error()
	case errors.Is(err, dial.ErrBlocked):
		return ConnectBlocked, err.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectRefused, "connection refused on port 25"
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		return ConnectTimeout, "connection to port 25 timed out (port 25 may be filtered, by the host or on the scanner's network)"
	}
	return ConnectError, "connection failed: " + err.Error()
}

// classifyRead names a failure to read a reply.
func classifyRead(err error, timeout, closed, malformed Class, what string) (Class, string) {
	switch {
	case isTimeout(err):
		return timeout, what + " did not arrive in time"
	case errors.Is(err, errTooMuch):
		return malformed, what + " is longer than 256 KiB"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return closed, "the server closed the connection instead of sending " + what
	}
	return malformed, what + " is not a valid SMTP reply: " + err.Error()
}
