package policyhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/fetch"
)

// The fast path answers the one request senders make — a complete
// "GET /.well-known/mta-sts.txt HTTP/1.1" with a Host of a served site,
// matching the SNI — with bytes prepared when the sites were built, on the
// TLS connection directly. net/http costs about half of the CPU per
// request here (a goroutine and a read syscall for its background read,
// six deadline changes, header maps); bench/host.sh measures the
// difference against nginx. Anything else — another path, method or
// host, a head split over reads, a body, HTTP/1.0, an odd header — hands
// the connection, with the bytes already read, to the net/http server,
// which keeps every rule and answer it had.

// fastBufSize is the read buffer: a request head must fit in it to be
// served fast (net/http allows max_header_bytes plus 4096, never less).
const fastBufSize = 4096

// fastConn is one HTTPS connection on the fast path.
type fastConn struct {
	c   *tls.Conn
	br  *bufio.Reader
	sni string
	ip  netip.Addr
	out []byte
	// mu orders a refresh of the read deadline against Shutdown's wake.
	mu      sync.Mutex
	readBy  time.Time
	writeBy time.Time
}

// handedConn gives net/http a connection the fast path started to read:
// the bytes already buffered come first.
type handedConn struct {
	*tls.Conn
	br *bufio.Reader
}

func (h *handedConn) Read(p []byte) (int, error) { return h.br.Read(p) }

// connQueue is the listener the net/http server takes handed connections
// from.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error   { q.once.Do(func() { close(q.done) }); return nil }
func (q *connQueue) Addr() net.Addr { return q.addr }

func (q *connQueue) hand(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

// fastListener is what Shutdown closes: the TLS listener and the queue.
type fastListener struct {
	l net.Listener
	q *connQueue
}

// tlsStateKey carries a handed connection's TLS state to ServeHTTP (net/http
// fills r.TLS only for a *tls.Conn).
type tlsStateKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if h, ok := c.(*handedConn); ok {
		st := h.Conn.ConnectionState()
		return context.WithValue(ctx, tlsStateKey{}, &st)
	}
	return ctx
}

func requestTLS(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	st, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}

// acceptFast accepts TLS connections and serves each on the fast path.
func (s *Server) acceptFast(l net.Listener, q *connQueue) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.Log.Debug("accept", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		fc := &fastConn{c: c.(*tls.Conn)}
		if !s.addFast(fc) {
			c.Close()
			return http.ErrServerClosed
		}
		go s.serveFast(fc, q)
	}
}

func (s *Server) addFast(fc *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.fast[fc] = struct{}{}
	s.fastWG.Add(1)
	return true
}

func (s *Server) removeFast(fc *fastConn) {
	s.mu.Lock()
	delete(s.fast, fc)
	s.mu.Unlock()
	s.fastWG.Done()
}

// wake ends an idle connection at Shutdown (a busy one ends after its
// response).
func (fc *fastConn) wake() {
	fc.mu.Lock()
	fc.c.SetReadDeadline(time.Now())
	fc.mu.Unlock()
}

// refresh moves a deadline only when it has used up a sixteenth of d, so
// that a busy connection changes its timers about once a second rather
// than on every request; the bound stays between 15/16 of d and d.
func refresh(by *time.Time, now time.Time, d time.Duration, set func(time.Time) error) {
	if d <= 0 || by.Sub(now) > d-d/16 {
		return
	}
	*by = now.Add(d)
	set(*by)
}

// setRead arms the read deadline, unless the server is stopping.
func (fc *fastConn) setRead(s *Server, now time.Time, d time.Duration) bool {
	if d <= 0 || fc.readBy.Sub(now) > d-d/16 {
		return !s.closing.Load()
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	refresh(&fc.readBy, now, d, fc.c.SetReadDeadline)
	return true
}

func (s *Server) serveFast(fc *fastConn, q *connQueue) {
	handed := false
	defer func() {
		if p := recover(); p != nil {
			s.Metrics.Panics.Inc()
			s.Log.Error("panic serving a connection", "panic", fmt.Sprint(p))
		}
		if !handed {
			fc.c.Close()
		}
		s.removeFast(fc)
	}()
	l := s.Limits
	// The handshake is bounded by the shortest timeout, as in net/http.
	hs := time.Duration(0)
	for _, d := range []time.Duration{l.ReadHeaderTimeout.D(), l.ReadTimeout.D(), l.WriteTimeout.D()} {
		if d > 0 && (hs == 0 || d < hs) {
			hs = d
		}
	}
	if hs > 0 {
		fc.c.SetDeadline(time.Now().Add(hs))
	}
	if err := fc.c.Handshake(); err != nil {
		s.Log.Debug("TLS handshake failed", "remote", fc.c.RemoteAddr().String(), "error", err)
		return
	}
	if hs > 0 {
		fc.c.SetDeadline(time.Time{}) // the request deadlines follow
	}
	st := fc.c.ConnectionState()
	fc.sni = strings.TrimSuffix(st.ServerName, ".")
	fc.ip = remoteIP(fc.c.RemoteAddr().String())
	fc.br = bufio.NewReaderSize(fc.c, fastBufSize)
	hand := func() {
		handed = true
		fc.c.SetDeadline(time.Time{}) // net/http sets its own
		q.hand(&handedConn{Conn: fc.c, br: fc.br})
	}
	if p := st.NegotiatedProtocol; p != "" && p != "http/1.1" {
		hand()
		return
	}
	// The first request gets the header timeout, the next ones the idle
	// timeout (each falls back on read_timeout, as in net/http).
	wait, idle := l.ReadHeaderTimeout.D(), l.IdleTimeout.D()
	if wait <= 0 {
		wait = l.ReadTimeout.D()
	}
	if idle <= 0 {
		idle = l.ReadTimeout.D()
	}
	for {
		if !fc.setRead(s, time.Now(), wait) {
			return
		}
		wait = idle
		if _, err := fc.br.Peek(1); err != nil {
			return
		}
		buf, _ := fc.br.Peek(fc.br.Buffered())
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			hand()
			return
		}
		head := buf[:end+4]
		req, ok := parseFast(head)
		if !ok {
			hand()
			return
		}
		sites := s.sites.Load()
		site := sites.Lookup(string(req.host))
		if site == nil || len(site.fastHead) == 0 || !strings.EqualFold(fc.sni, site.Host) {
			hand()
			return
		}
		limited := !s.limiter.allow(fc.ip)
		fc.br.Discard(len(head))
		now := time.Now()
		out := fc.out[:0]
		if limited {
			out = append(out, "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nX-Content-Type-Options: nosniff\r\n"...)
		} else {
			out = append(out, site.fastHead...)
		}
		if req.close {
			out = append(out, "Connection: close\r\n"...)
		}
		out = append(out, "Date: "...)
		out = s.appendDate(out, now)
		out = append(out, "\r\n\r\n"...)
		if !limited && !req.head {
			out = append(out, site.Body...)
		}
		fc.out = out
		refresh(&fc.writeBy, now, l.WriteTimeout.D(), fc.c.SetWriteDeadline)
		// Counted before the write, as the net/http path counts after
		// WriteHeader: a client that has read the response then always
		// finds it in /metrics.
		if limited {
			s.rateLimited.Inc()
		} else {
			s.policyServed.Inc()
		}
		if _, err := fc.c.Write(out); err != nil {
			return
		}
		if req.close {
			return
		}
	}
}

type fastRequest struct {
	head, close bool
	host        []byte
}

// parseFast accepts only the plain shape of a policy request: GET or HEAD
// of the policy path over HTTP/1.1, one Host, no body, well-formed header
// lines; ok is false for anything else, which net/http then handles.
func parseFast(head []byte) (r fastRequest, ok bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		line, r.head = line[5:], true
	default:
		return r, false
	}
	target, proto, _ := bytes.Cut(line, []byte(" "))
	if string(target) != fetch.Path || string(proto) != "HTTP/1.1" {
		return r, false
	}
	seenHost := false
	for len(rest) > 2 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !validToken(name) {
			return r, false
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return r, false
			}
		}
		switch {
		case asciiEqualFold(name, "Host"):
			if seenHost { // two Host fields: net/http refuses the request
				return r, false
			}
			seenHost, r.host = true, value
		case asciiEqualFold(name, "Connection"):
			for _, t := range bytes.Split(value, []byte(",")) {
				t = bytes.Trim(t, " \t")
				switch {
				case asciiEqualFold(t, "close"):
					r.close = true
				case asciiEqualFold(t, "keep-alive"):
				default:
					return r, false
				}
			}
		case asciiEqualFold(name, "Content-Length"), asciiEqualFold(name, "Transfer-Encoding"),
			asciiEqualFold(name, "Expect"), asciiEqualFold(name, "Upgrade"):
			return r, false
		}
	}
	if len(r.host) == 0 {
		return r, false
	}
	// A port is allowed, as ServeHTTP allows it.
	if i := bytes.LastIndexByte(r.host, ':'); i >= 0 && bytes.IndexByte(r.host, ']') < 0 {
		if _, err := strconv.ParseUint(string(r.host[i+1:]), 10, 16); err != nil {
			return r, false
		}
		r.host = r.host[:i]
	}
	if bytes.IndexByte(r.host, ':') >= 0 {
		return r, false // not a host name: net/http's answer
	}
	return r, true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// validToken is the header name syntax (RFC 9110 §5.1).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

type httpDate struct {
	sec int64
	b   []byte
}

// appendDate appends the Date header value, formatted once a second.
func (s *Server) appendDate(dst []byte, now time.Time) []byte {
	d := s.date.Load()
	if d == nil || d.sec != now.Unix() {
		d = &httpDate{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		s.date.Store(d)
	}
	return append(dst, d.b...)
}

// fastHead is the status line and headers of a site's policy response,
// but the Date.
func fastHead(body []byte, cacheControl string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	if cacheControl != "" {
		if strings.ContainsAny(cacheControl, "\r\n") {
			return nil // never on the fast path; net/http rejects it too
		}
		b.WriteString("Cache-Control: " + cacheControl + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("X-Content-Type-Options: nosniff\r\n")
	return b.Bytes()
}
