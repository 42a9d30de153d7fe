package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
)

// SMTPMode selects how a lab SMTP server ([StartSMTP], [Lab.MX]) behaves.
type SMTPMode int

// The modes. The first two are well-behaved servers; the others are the
// ways real MX hosts fail a scanner.
const (
	// SMTPStartTLS sends a 220 banner, advertises STARTTLS in its EHLO
	// reply and upgrades to TLS with the configured certificates.
	SMTPStartTLS SMTPMode = iota
	// SMTPNoStartTLS does not advertise STARTTLS and answers the command
	// with "502 5.5.1 not implemented".
	SMTPNoStartTLS
	// SMTPBanner421 greets with "421 4.7.0 <name> Too many connections,
	// try again later" and closes (greylisting, scanner blocking).
	SMTPBanner421
	// SMTPBanner554 greets with "554 5.7.1 <name> No SMTP service here"
	// and closes.
	SMTPBanner554
	// SMTPStallAfterBanner sends the 220 banner and then never answers;
	// what the client sends is read, recorded and discarded.
	SMTPStallAfterBanner
	// SMTPNoBanner accepts the connection and never sends anything.
	SMTPNoBanner
	// SMTPEndlessBanner sends "220 " followed by a line that never ends
	// (no CRLF), until the client goes away.
	SMTPEndlessBanner
	// SMTPEndlessMultiline sends "220-aaaa…\r\n" continuation lines
	// forever, until the client goes away.
	SMTPEndlessMultiline
	// SMTPStartTLSRefused advertises STARTTLS but answers the command with
	// "454 4.7.0 TLS not available due to temporary reason"; the session
	// goes on in plain text.
	SMTPStartTLSRefused
	// SMTPHandshakeFails advertises STARTTLS and answers it with 220, then
	// reads the client's first TLS flight, answers with a TLS record that
	// holds no valid handshake message and closes.
	SMTPHandshakeFails
	// SMTPPlainAfterSTARTTLS advertises STARTTLS and answers it with 220
	// followed, in the same write, by a plain-text line (a server or
	// middlebox that never switches to TLS), then reads and discards what
	// the client sends without answering until the client goes away.
	SMTPPlainAfterSTARTTLS

	smtpModeCount // not a mode
)

var smtpModeNames = [smtpModeCount]string{
	"SMTPStartTLS", "SMTPNoStartTLS", "SMTPBanner421", "SMTPBanner554",
	"SMTPStallAfterBanner", "SMTPNoBanner", "SMTPEndlessBanner",
	"SMTPEndlessMultiline", "SMTPStartTLSRefused", "SMTPHandshakeFails",
	"SMTPPlainAfterSTARTTLS",
}

func (m SMTPMode) String() string {
	if m >= 0 && m < smtpModeCount {
		return smtpModeNames[m]
	}
	return fmt.Sprintf("SMTPMode(%d)", int(m))
}

// Limits and defaults of the lab SMTP servers.
const (
	// smtpReadTimeout bounds the wait for a command, a TLS handshake and
	// the drain after a closing reply.
	smtpReadTimeout = 30 * time.Second
	// smtpWriteTimeout bounds every write, so an endless mode stops when
	// the client stops reading.
	smtpWriteTimeout = 10 * time.Second
	// smtpMaxLine is the longest command line accepted, CRLF included
	// (RFC 5321 §4.5.3.1.4 says 512; servers accept more).
	smtpMaxLine = 2000
	// smtpMaxCommands caps the commands recorded per session.
	smtpMaxCommands = 1000
	// smtpMaxMessage caps a message taken with AcceptMail, and
	// smtpMaxMessages the messages recorded per session.
	smtpMaxMessage  = 1 << 20
	smtpMaxMessages = 100
	// smtpCloseGrace: a session the server found closed by its client
	// (EOF or reset, no QUIT) within this long after another session from
	// the same IP started is taken to have been closed before it; see
	// SMTPSession.Concurrent.
	smtpCloseGrace = 100 * time.Millisecond
	// smtpDefaultName is the server name when SMTPOptions.Name is empty.
	smtpDefaultName = "localhost"
)

// The endless modes write these again and again.
var (
	smtpEndlessLine  = []byte(strings.Repeat("a", 4096))
	smtpEndlessLines = []byte(strings.Repeat("220-"+strings.Repeat("a", 72)+"\r\n", 52))
)

// smtpGarbage is what SMTPHandshakeFails sends instead of a ServerHello: a
// TLS 1.2 handshake record header whose body is not a handshake message,
// so the client fails inside TLS (plain text after the 220 is
// SMTPPlainAfterSTARTTLS).
var smtpGarbage = append([]byte{0x16, 0x03, 0x03, 0x00, 0x2a}, "mailtls lab: this is not a ServerHello\x00\x01\xff\xfe"...)

// smtpPlainAfterReady is the line SMTPPlainAfterSTARTTLS sends right after
// its 220 to STARTTLS, where a ServerHello should follow the client's
// ClientHello.
const smtpPlainAfterReady = "250 2.0.0 mailtls lab: still talking plain SMTP"

// SMTPOptions configures a lab SMTP server.
type SMTPOptions struct {
	Mode SMTPMode
	// Name is the host name in the banner and the EHLO reply, e.g.
	// "mx1.example.test"; "" means "localhost" (Lab.MX: the host).
	Name string
	// Cert is the STARTTLS certificate (SMTPStartTLS only). The zero value
	// means a good one for Name from the CA passed to StartSMTP (Lab.MX:
	// for the host, from Lab.CA).
	Cert tls.Certificate
	// Certs, if set, is used instead of Cert: several chains (RSA and
	// ECDSA, say), of which crypto/tls picks one by the ClientHello.
	Certs []tls.Certificate
	// MinVersion and MaxVersion bound the TLS versions (zero: crypto/tls
	// defaults). A MaxVersion below TLS 1.2 with a zero MinVersion means
	// MinVersion tls.VersionTLS10, so MaxVersion tls.VersionTLS10 alone
	// gives a TLS 1.0-only server.
	MinVersion, MaxVersion uint16
	// Addr is the listen address; "" means "127.0.0.1:0". Use "[::1]:0"
	// for IPv6.
	Addr string
	// ReadTimeout bounds the wait for each command and for the TLS
	// handshake (default 30s); the stalling modes ignore it. WriteTimeout
	// bounds each write (default 10s).
	ReadTimeout, WriteTimeout time.Duration
	// AcceptMail makes the server take mail (the dialog modes): MAIL, RCPT
	// and DATA are answered as a real MX host does, and each message is
	// recorded in SMTPSession.Messages, up to 1 MiB (a larger one is
	// refused with 552 and not recorded). Without it, MAIL is refused with
	// 550: a scanner never sends mail.
	AcceptMail bool
}

// SMTPMessage is a message a server with AcceptMail took.
type SMTPMessage struct {
	From string   // the MAIL FROM address, without the angle brackets
	To   []string // the RCPT TO addresses
	Data []byte   // the message as sent, dot-unstuffed, lines ending in CRLF
	TLS  bool     // it came over TLS (after STARTTLS)
}

// SMTPSession is what one client connection did, for assertions.
type SMTPSession struct {
	Remote string    // the client's address, "127.0.0.1:PORT"
	Start  time.Time // when the server accepted the connection
	// Commands are the lines the client sent, oldest first: the verb in
	// upper case, then the rest of the line as received ("EHLO
	// mailtls.example", "STARTTLS", "QUIT"). The stalling modes record
	// what they discard.
	Commands []string
	// TLS reports a completed STARTTLS handshake; TLSVersion is its
	// version. ServerName is the SNI the client sent, recorded even when
	// the handshake failed later.
	TLS        bool
	TLSVersion uint16
	ServerName string
	// Messages are the messages taken (AcceptMail), oldest first.
	Messages []SMTPMessage
	// Concurrent is the number of sessions from the same client IP open
	// when this one started, itself included: 1 for a client that makes
	// one connection at a time. A session stops being open when the
	// server reads QUIT or starts a closing reply (421, 554, timeout), or
	// when the client has closed the connection. On Unix systems the
	// server checks the sockets of the other sessions for the client's
	// close when a connection arrives; where that cannot tell (no Unix, or
	// unread data before the close) a session the server finds closed by
	// its client within 100ms after this one started does not count,
	// because the server notices a close a little late.
	Concurrent int
}

// SMTPServer is a lab SMTP server on one listener, behaving as its
// SMTPMode says. It is safe for concurrent use.
type SMTPServer struct {
	ln           net.Listener
	mode         SMTPMode
	name         string
	tls          *tls.Config // SMTPStartTLS only
	readTimeout  time.Duration
	writeTimeout time.Duration
	acceptMail   bool
	hook         func() // called at the start of every session (tests)

	wg        sync.WaitGroup // the accept loop and the connections
	closeOnce sync.Once
	closeErr  error
	panics    atomic.Int64

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]*smtpRecord // open connections
	records []*smtpRecord            // every session, in accept order
	idle    chan struct{}            // closed while no connection is open
}

// smtpRecord is the server's view of one session; the fields are guarded
// by SMTPServer.mu.
type smtpRecord struct {
	remote     string
	ip         string
	start      time.Time
	overlap    []*smtpRecord // open sessions from ip when this one started
	commands   []string
	tls        bool
	version    uint16
	serverName string
	messages   []SMTPMessage

	open      bool      // counts for Concurrent
	end       time.Time // when it stopped counting
	endLagged bool      // ended by noticing the client's close
}

// StartSMTP starts an SMTP server. ca issues the default certificate of
// SMTPStartTLS mode and may be nil when o has a certificate or the mode
// does no TLS. Call Close to stop it.
func StartSMTP(o SMTPOptions, ca *CA) (*SMTPServer, error) {
	return startSMTP(o, ca, nil)
}

func startSMTP(o SMTPOptions, ca *CA, hook func()) (*SMTPServer, error) {
	if o.Mode < 0 || o.Mode >= smtpModeCount {
		return nil, fmt.Errorf("lab: smtp: unknown mode %v", o.Mode)
	}
	s := &SMTPServer{
		mode:         o.Mode,
		name:         o.Name,
		readTimeout:  o.ReadTimeout,
		writeTimeout: o.WriteTimeout,
		acceptMail:   o.AcceptMail,
		hook:         hook,
		conns:        make(map[net.Conn]*smtpRecord),
		idle:         make(chan struct{}),
	}
	close(s.idle)
	if s.name == "" {
		s.name = smtpDefaultName
	}
	if s.readTimeout <= 0 {
		s.readTimeout = smtpReadTimeout
	}
	if s.writeTimeout <= 0 {
		s.writeTimeout = smtpWriteTimeout
	}
	if o.Mode == SMTPStartTLS {
		certs := o.Certs
		if len(certs) == 0 && len(o.Cert.Certificate) > 0 {
			certs = []tls.Certificate{o.Cert}
		}
		if len(certs) == 0 {
			if ca == nil {
				return nil, fmt.Errorf("lab: smtp %s: no certificate and no CA to issue one", s.name)
			}
			cert, err := ca.Issue(LeafOptions{DNSNames: []string{s.name}})
			if err != nil {
				return nil, fmt.Errorf("lab: smtp %s: %w", s.name, err)
			}
			certs = []tls.Certificate{cert}
		}
		lo, hi := o.MinVersion, o.MaxVersion
		if lo == 0 && hi != 0 && hi < tls.VersionTLS12 {
			lo = tls.VersionTLS10
		}
		s.tls = &tls.Config{Certificates: certs, MinVersion: lo, MaxVersion: hi}
	}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: smtp %s: listen: %w", s.name, err)
	}
	s.ln = &latencyListener{Listener: ln}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// NewSMTP is StartSMTP for tests: it fails t on error, and when the test
// ends it closes the server and fails t if the server recovered a panic.
func NewSMTP(t testing.TB, o SMTPOptions, ca *CA) *SMTPServer {
	t.Helper()
	s, err := StartSMTP(o, ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if n := s.Panics(); n > 0 {
			t.Errorf("lab: smtp server %s panicked %d times", s.name, n)
		}
	})
	return s
}

// Addr returns the listener's address, e.g. "127.0.0.1:PORT".
func (s *SMTPServer) Addr() string { return s.ln.Addr().String() }

// Mode returns the server's mode.
func (s *SMTPServer) Mode() SMTPMode { return s.mode }

// Panics returns how many panics the server recovered. Tests should fail
// when it is not zero.
func (s *SMTPServer) Panics() int { return int(s.panics.Load()) }

// Close stops accepting, closes every open connection and waits for the
// server's goroutines. It is safe to call more than once.
func (s *SMTPServer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		err := s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("lab: smtp %s: close: %w", s.name, err)
		}
	})
	return s.closeErr
}

// WaitIdle waits until no connection is open (the server has finished
// with every client so far, and their sessions are complete) or ctx is
// done.
func (s *SMTPServer) WaitIdle(ctx context.Context) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sessions returns what every client did so far, in the order the server
// accepted them. A session still open may get more commands; call WaitIdle
// or Close first for final values.
func (s *SMTPServer) Sessions() []SMTPSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SMTPSession, len(s.records))
	for i, r := range s.records {
		out[i] = SMTPSession{
			Remote:     r.remote,
			Start:      r.start,
			Commands:   append([]string(nil), r.commands...),
			TLS:        r.tls,
			TLSVersion: r.version,
			ServerName: r.serverName,
			Messages:   slices.Clone(r.messages),
			Concurrent: r.concurrentLocked(),
		}
	}
	return out
}

// MaxConcurrent returns the highest SMTPSession.Concurrent so far: the
// most sessions from one client IP open at the same time (0 before the
// first session).
func (s *SMTPServer) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		n = max(n, r.concurrentLocked())
	}
	return n
}

// concurrentLocked counts the sessions open when r started, r included,
// leaving out those the server found closed by their client just after r
// started (see SMTPSession.Concurrent).
func (r *smtpRecord) concurrentLocked() int {
	n := 1
	for _, o := range r.overlap {
		if o.open || !o.endLagged || o.end.Sub(r.start) > smtpCloseGrace {
			n++
		}
	}
	return n
}

func (s *SMTPServer) recoverPanic() {
	if r := recover(); r != nil {
		s.panics.Add(1)
	}
}

func (s *SMTPServer) acceptLoop() {
	defer s.wg.Done()
	defer s.recoverPanic()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		rec := s.open(c)
		if rec == nil {
			c.Close()
			return
		}
		go s.handle(c, rec)
	}
}

// open registers a new connection and its session; it returns nil if the
// server is closed.
func (s *SMTPServer) open(c net.Conn) *smtpRecord {
	remote := c.RemoteAddr().String()
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		ip = remote
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	r := &smtpRecord{remote: remote, ip: ip, start: time.Now(), open: true}
	for oc, o := range s.conns {
		if o.open && o.ip == ip && !peerClosed(oc) {
			r.overlap = append(r.overlap, o)
		}
	}
	if len(s.conns) == 0 {
		s.idle = make(chan struct{})
	}
	s.conns[c] = r
	s.records = append(s.records, r)
	s.wg.Add(1)
	return r
}

// handle runs one session; it owns c.
func (s *SMTPServer) handle(c net.Conn, r *smtpRecord) {
	defer s.wg.Done()
	defer s.release(c, r)
	defer s.recoverPanic()
	if s.hook != nil {
		s.hook()
	}
	sc := &smtpConn{s: s, raw: c, conn: c, br: bufio.NewReader(c), rec: r}
	sc.serve()
}

// release closes c and ends its session.
func (s *SMTPServer) release(c net.Conn, r *smtpRecord) {
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(r, true)
	delete(s.conns, c)
	if len(s.conns) == 0 {
		close(s.idle)
	}
}

// end stops r counting as open; lagged says that the server only noticed
// that the client had gone.
func (s *SMTPServer) end(r *smtpRecord, lagged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(r, lagged)
}

func (s *SMTPServer) endLocked(r *smtpRecord, lagged bool) {
	if r.open {
		r.open, r.end, r.endLagged = false, time.Now(), lagged
	}
}

func (s *SMTPServer) record(r *smtpRecord, f func(*smtpRecord)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(r)
}

// smtpConn is one session being served.
type smtpConn struct {
	s    *SMTPServer
	raw  net.Conn
	conn net.Conn // raw, or the TLS connection over it after STARTTLS
	br   *bufio.Reader
	rec  *smtpRecord
	helo bool // the client said EHLO or HELO (since STARTTLS)

	// The mail transaction (AcceptMail).
	from  string
	inTx  bool
	rcpts []string
}

var errLineTooLong = errors.New("line too long")

func (c *smtpConn) serve() {
	s := c.s
	switch s.mode {
	case SMTPNoBanner:
		c.discard()
	case SMTPStallAfterBanner:
		if c.reply("220 "+s.name+" ESMTP mailtls lab") == nil {
			c.discard()
		}
	case SMTPBanner421:
		s.end(c.rec, false)
		if c.reply("421 4.7.0 "+s.name+" Too many connections, try again later") == nil {
			c.linger()
		}
	case SMTPBanner554:
		s.end(c.rec, false)
		if c.reply("554 5.7.1 "+s.name+" No SMTP service here") == nil {
			c.linger()
		}
	case SMTPEndlessBanner:
		if c.write([]byte("220 ")) == nil {
			c.endless(smtpEndlessLine)
		}
	case SMTPEndlessMultiline:
		c.endless(smtpEndlessLines)
	default:
		c.dialog()
	}
}

// write writes p within the write timeout.
func (c *smtpConn) write(p []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.s.writeTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(p)
	return err
}

// reply writes a reply; lines after the first are continuation lines and
// must carry their own "250-" prefix.
func (c *smtpConn) reply(lines ...string) error {
	return c.write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
}

// endless writes chunk until a write fails: the client went away, stopped
// reading for the write timeout, or the server was closed.
func (c *smtpConn) endless(chunk []byte) {
	for c.write(chunk) == nil {
	}
}

// discard reads, records and discards lines until the connection ends.
func (c *smtpConn) discard() {
	for {
		line, err := readSMTPLine(c.br, true)
		if err != nil {
			return
		}
		c.command(line)
	}
}

// linger ends a session after a closing reply without losing it to a TCP
// reset: it shuts down writing, then reads what the client still sends
// until it closes (or the read timeout passes).
func (c *smtpConn) linger() {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(c.s.readTimeout))
	_, _ = io.Copy(io.Discard, c.raw)
}

// readSMTPLine reads a line and returns it without its line ending. A line
// longer than smtpMaxLine is an error, or with truncate is cut to that
// length after the rest of it is read and dropped.
func readSMTPLine(br *bufio.Reader, truncate bool) (string, error) {
	var line []byte
	long := false
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > smtpMaxLine {
			if !truncate {
				return "", errLineTooLong
			}
			long = true
			frag = frag[:smtpMaxLine-len(line)]
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return "", err
		}
	}
	s := string(line)
	if !long {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	return s, nil
}

// command records line as a command and returns its verb (upper case) and
// argument (trimmed).
func (c *smtpConn) command(line string) (verb, arg string) {
	verb, rest, hasArg := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	cmd := verb
	if hasArg {
		cmd += " " + rest
	}
	c.s.record(c.rec, func(r *smtpRecord) {
		if len(r.commands) < smtpMaxCommands {
			r.commands = append(r.commands, cmd)
		}
	})
	return verb, strings.TrimSpace(rest)
}

// dialog serves an SMTP session up to STARTTLS and beyond: the modes
// SMTPStartTLS, SMTPNoStartTLS, SMTPStartTLSRefused, SMTPHandshakeFails and
// SMTPPlainAfterSTARTTLS.
func (c *smtpConn) dialog() {
	s := c.s
	if c.reply("220 "+s.name+" ESMTP mailtls lab") != nil {
		return
	}
	for {
		if c.conn.SetReadDeadline(time.Now().Add(s.readTimeout)) != nil {
			return
		}
		line, err := readSMTPLine(c.br, false)
		var ne net.Error
		switch {
		case err == nil:
		case errors.Is(err, errLineTooLong):
			s.end(c.rec, false)
			_ = c.reply("500 5.5.0 " + s.name + " Error: line too long")
			return
		case errors.As(err, &ne) && ne.Timeout():
			s.end(c.rec, false)
			_ = c.reply("421 4.4.2 " + s.name + " Error: timeout exceeded")
			return
		default:
			return // the client went away, or Close
		}
		verb, arg := c.command(line)
		var werr error
		switch verb {
		case "EHLO":
			werr = c.ehlo(arg)
		case "HELO":
			if arg == "" {
				werr = c.reply("501 5.5.4 Syntax: HELO hostname")
			} else {
				c.helo = true
				c.resetTx()
				werr = c.reply("250 " + s.name + " Hello " + arg)
			}
		case "STARTTLS":
			if !c.startTLS(arg) {
				return
			}
		case "MAIL":
			switch {
			case !c.helo:
				werr = c.reply("503 5.5.1 Error: send HELO/EHLO first")
			case !s.acceptMail:
				werr = c.reply("550 5.7.1 " + s.name + " is a mailtls lab server and accepts no mail")
			case c.inTx:
				werr = c.reply("503 5.5.1 Error: nested MAIL command")
			default:
				addr, ok := pathArg(arg, "FROM:")
				if !ok {
					werr = c.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
					break
				}
				c.from, c.inTx = addr, true
				werr = c.reply("250 2.1.0 Ok")
			}
		case "RCPT":
			if !c.inTx {
				werr = c.reply("503 5.5.1 Error: need MAIL command")
				break
			}
			addr, ok := pathArg(arg, "TO:")
			if !ok || addr == "" {
				werr = c.reply("501 5.5.4 Syntax: RCPT TO:<address>")
				break
			}
			c.rcpts = append(c.rcpts, addr)
			werr = c.reply("250 2.1.5 Ok")
		case "DATA":
			if len(c.rcpts) == 0 {
				werr = c.reply("503 5.5.1 Error: need RCPT command")
				break
			}
			werr = c.data()
		case "BDAT":
			werr = c.reply("503 5.5.1 Error: need RCPT command")
		case "RSET":
			c.resetTx()
			werr = c.reply("250 2.0.0 OK")
		case "NOOP":
			werr = c.reply("250 2.0.0 OK")
		case "VRFY":
			werr = c.reply("252 2.0.0 Cannot VRFY user")
		case "QUIT":
			s.end(c.rec, false)
			if c.reply("221 2.0.0 "+s.name+" Bye") == nil {
				if tc, ok := c.conn.(*tls.Conn); ok {
					_ = tc.CloseWrite() // close_notify
				}
			}
			return
		case "":
			werr = c.reply("500 5.5.2 Error: bad syntax")
		default:
			werr = c.reply("502 5.5.2 Error: command not recognized")
		}
		if werr != nil {
			return
		}
	}
}

// pathArg reads "FROM:<addr> PARAMS" (or "TO:..."): the address without
// its angle brackets.
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[1:], ">")
	return addr, ok
}

func (c *smtpConn) resetTx() { c.from, c.inTx, c.rcpts = "", false, nil }

// data takes a message after DATA (AcceptMail): the lines up to the one
// holding a single dot, dot-unstuffed (RFC 5321 §4.5.2), recorded when no
// larger than smtpMaxMessage.
func (c *smtpConn) data() error {
	if err := c.reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
		return err
	}
	var msg []byte
	tooBig := false
	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.s.readTimeout)); err != nil {
			return err
		}
		line, err := readSMTPLine(c.br, true)
		if err != nil {
			return err
		}
		if line == "." {
			break
		}
		line = strings.TrimPrefix(line, ".")
		if len(msg)+len(line)+2 > smtpMaxMessage {
			tooBig = true
			continue
		}
		msg = append(append(msg, line...), "\r\n"...)
	}
	m := SMTPMessage{From: c.from, To: c.rcpts, Data: msg, TLS: c.conn != c.raw}
	c.resetTx()
	if tooBig {
		return c.reply("552 5.3.4 Error: message file too big")
	}
	c.s.record(c.rec, func(r *smtpRecord) {
		if len(r.messages) < smtpMaxMessages {
			r.messages = append(r.messages, m)
		}
	})
	return c.reply("250 2.0.0 Ok: queued by mailtls lab")
}

func (c *smtpConn) ehlo(arg string) error {
	if arg == "" {
		return c.reply("501 5.5.4 Syntax: EHLO hostname")
	}
	c.helo = true
	c.resetTx()
	ext := []string{"PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"}
	if c.s.mode != SMTPNoStartTLS && c.conn == c.raw {
		ext = append(ext, "STARTTLS")
	}
	ext = append(ext, "SMTPUTF8")
	lines := []string{"250-" + c.s.name + " Hello " + arg}
	for i, e := range ext {
		sep := "-"
		if i == len(ext)-1 {
			sep = " "
		}
		lines = append(lines, "250"+sep+e)
	}
	return c.reply(lines...)
}

// startTLS answers STARTTLS as the mode says; it reports whether the
// session goes on.
func (c *smtpConn) startTLS(arg string) bool {
	s := c.s
	switch {
	case arg != "":
		return c.reply("501 5.5.4 Syntax: STARTTLS") == nil
	case c.conn != c.raw:
		return c.reply("554 5.5.1 Error: TLS already active") == nil
	case s.mode == SMTPNoStartTLS:
		return c.reply("502 5.5.1 not implemented") == nil
	case s.mode == SMTPStartTLSRefused:
		return c.reply("454 4.7.0 TLS not available due to temporary reason") == nil
	}
	if s.mode == SMTPPlainAfterSTARTTLS {
		s.end(c.rec, false)
		if c.reply("220 2.0.0 Ready to start TLS", smtpPlainAfterReady) == nil {
			c.discard()
		}
		return false
	}
	if c.reply("220 2.0.0 Ready to start TLS") != nil {
		return false
	}
	// Whatever the client sent after STARTTLS in plain text is dropped
	// with c.br (RFC 3207 §4.2); the handshake reads c.raw afresh.
	if err := c.raw.SetDeadline(time.Now().Add(s.readTimeout)); err != nil {
		return false
	}
	if s.mode == SMTPHandshakeFails {
		if c.br.Buffered() == 0 { // else the client did not wait for the 220
			buf := make([]byte, 1024)
			if _, err := c.raw.Read(buf); err != nil { // the ClientHello, or part of it
				return false
			}
		}
		s.end(c.rec, false)
		if c.write(smtpGarbage) == nil {
			c.linger()
		}
		return false
	}
	// GetConfigForClient sees the ClientHello before version and
	// certificate checks, so the SNI is recorded even when they fail.
	cfg := s.tls.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.record(c.rec, func(r *smtpRecord) { r.serverName = hello.ServerName })
		return nil, nil
	}
	tc := tls.Server(c.raw, cfg)
	if err := tc.Handshake(); err != nil {
		return false
	}
	version := tc.ConnectionState().Version
	s.record(c.rec, func(r *smtpRecord) { r.tls, r.version = true, version })
	if c.raw.SetDeadline(time.Time{}) != nil {
		return false
	}
	c.conn, c.br, c.helo = tc, bufio.NewReader(tc), false
	c.resetTx() // RFC 3207 §4.2: the session starts again
	return true
}

// MX starts an SMTP server for the MX host host and makes it reachable the
// way a scanner finds it: "host. 300 IN A" (or AAAA) records for addrs in
// the lab DNS, and every addr's port 25 mapped to the server. o.Name
// defaults to host, and in SMTPStartTLS mode the certificate to a good one
// for host from Lab.CA. addrs are fake addresses from NextAddr, or ::1
// (NextAddr6), which can carry port 25 for only one server of a lab: an
// address whose port 25 is already mapped is an error. The server listens
// on o.Addr ("127.0.0.1:0" by default, whatever the addresses) and closes
// with the lab.
func (l *Lab) MX(host string, addrs []netip.Addr, o SMTPOptions) (*SMTPServer, error) {
	host = hostKey(host)
	if host == "" {
		return nil, errors.New("lab: mx: empty host name")
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("lab: mx %s: no address", host)
	}
	records := make([]string, len(addrs))
	for i, a := range addrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("lab: mx %s: invalid address", host)
		}
		a = a.Unmap()
		typ := "A"
		if a.Is6() {
			typ = "AAAA"
		}
		records[i] = fmt.Sprintf("%s. 300 IN %s %s", host, typ, a)
	}
	if o.Name == "" {
		o.Name = host
	}
	if o.Mode == SMTPStartTLS && len(o.Certs) == 0 && len(o.Cert.Certificate) == 0 {
		cert, err := l.CA.Issue(LeafOptions{DNSNames: []string{host}})
		if err != nil {
			return nil, fmt.Errorf("lab: mx %s: %w", host, err)
		}
		o.Cert = cert
	}
	s, err := StartSMTP(o, l.CA)
	if err != nil {
		return nil, err
	}
	if err := l.addMX(s, host, addrs); err != nil {
		s.Close()
		return nil, err
	}
	if err := l.DNS.Add(records...); err != nil {
		return nil, fmt.Errorf("lab: mx %s: %w", host, err)
	}
	return s, nil
}

// addMX maps port 25 of addrs to s and registers s to close with the lab.
func (l *Lab) addMX(s *SMTPServer, host string, addrs []netip.Addr) error {
	rules := make([]dial.Rule, len(addrs))
	for i, a := range addrs {
		r, err := mapRule(s.Addr(), a, 25)
		if err != nil {
			return fmt.Errorf("lab: mx %s: %w", host, err)
		}
		rules[i] = r
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lab: mx %s: lab closed", host)
	}
	for i, r := range rules {
		if l.ruleIndexLocked(r.Host, r.Port) >= 0 || slices.ContainsFunc(rules[:i], func(o dial.Rule) bool { return o.Host == r.Host }) {
			return fmt.Errorf("lab: mx %s: %s port 25 is already mapped", host, addrs[i])
		}
	}
	l.rules = append(l.rules, rules...)
	l.smtp = append(l.smtp, s)
	return nil
}

// MustMX is MX for tests: it fails t on error. Lab.New reports the
// server's panics when the test ends.
func (l *Lab) MustMX(t testing.TB, host string, addrs []netip.Addr, o SMTPOptions) *SMTPServer {
	t.Helper()
	s, err := l.MX(host, addrs, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
