package lab

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Timeouts of the lab HTTPS server. There is no write timeout, so that
// Endless can stream until the client gives up.
const (
	httpsReadHeaderTimeout = 10 * time.Second
	httpsReadTimeout       = 30 * time.Second
	httpsIdleTimeout       = 30 * time.Second
)

// HTTPS is a virtual-host HTTPS server (HTTP/1.1 only) on one listener. The
// certificate is chosen by SNI and the handler by the Host header; a client
// that sends an unknown server name, or none, gets an unrecognized_name
// alert, never a fallback certificate. Hosts may be added while it runs.
type HTTPS struct {
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup

	closeOnce sync.Once

	mu    sync.RWMutex
	hosts map[string]*vhost
}

type vhost struct {
	tls      *tls.Config
	handler  http.Handler
	requests atomic.Int64
}

// HostOptions are per-host TLS settings of the HTTPS server.
type HostOptions struct {
	// MinVersion and MaxVersion bound the TLS versions (tls.VersionTLS10
	// …); zero means the crypto/tls defaults. MaxVersion tls.VersionTLS11
	// with MinVersion tls.VersionTLS10 emulates an outdated server.
	MinVersion, MaxVersion uint16
}

// StartHTTPS starts an HTTPS server listening on addr; "" means
// "127.0.0.1:0". Use "[::1]:0" for IPv6.
func StartHTTPS(addr string) (*HTTPS, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: https listen: %w", err)
	}
	ln = &latencyListener{Listener: ln}
	s := &HTTPS{ln: ln, hosts: make(map[string]*vhost)}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: httpsReadHeaderTimeout,
		ReadTimeout:       httpsReadTimeout,
		IdleTimeout:       httpsIdleTimeout,
		Protocols:         protocols,
		ErrorLog:          log.New(io.Discard, "", 0), // handshake failures are expected
	}
	base := &tls.Config{
		NextProtos:         []string{"http/1.1"},
		GetConfigForClient: s.configForClient,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(tls.NewListener(ln, base)) // returns when closed
	}()
	return s, nil
}

// NewHTTPS is StartHTTPS for tests: it fails t on error and closes the
// server when the test ends.
func NewHTTPS(t testing.TB, addr string) *HTTPS {
	t.Helper()
	s, err := StartHTTPS(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr returns the listener's address, e.g. "127.0.0.1:PORT".
func (s *HTTPS) Addr() string { return s.ln.Addr().String() }

// Close stops the server, closing all connections, and waits for it.
func (s *HTTPS) Close() {
	s.closeOnce.Do(func() {
		_ = s.srv.Close()
		s.wg.Wait()
	})
}

// Host serves name with cert and h, with default TLS settings. Registering
// a name again replaces it.
func (s *HTTPS) Host(name string, cert tls.Certificate, h http.Handler) {
	s.HostWith(name, cert, h, HostOptions{})
}

// HostWith is Host with per-host TLS options.
func (s *HTTPS) HostWith(name string, cert tls.Certificate, h http.Handler, o HostOptions) {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   o.MinVersion,
		MaxVersion:   o.MaxVersion,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[hostKey(name)] = &vhost{tls: cfg, handler: h}
}

func hostKey(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// Requests returns how many requests the server has taken for name since
// it was registered (last).
func (s *HTTPS) Requests(name string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v, ok := s.hosts[hostKey(name)]; ok {
		return int(v.requests.Load())
	}
	return 0
}

// configForClient picks the host's TLS config by SNI. For an unknown name
// it returns nil, so the base config, which has no certificate, is used and
// crypto/tls sends an unrecognized_name alert.
func (s *HTTPS) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v, ok := s.hosts[hostKey(hello.ServerName)]; ok {
		return v.tls, nil
	}
	return nil, nil
}

// serveHTTP dispatches on the Host header; an unknown host gets 421
// Misdirected Request (RFC 9110 §15.5.20).
func (s *HTTPS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	s.mu.RLock()
	v, ok := s.hosts[hostKey(host)]
	s.mu.RUnlock()
	if !ok {
		http.Error(w, "lab: unknown host "+host, http.StatusMisdirectedRequest)
		return
	}
	v.requests.Add(1)
	v.handler.ServeHTTP(w, r)
}

// Static answers every request with status, contentType and body. An empty
// contentType sends no Content-Type header at all (net/http would otherwise
// sniff one).
func Static(status int, contentType, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if contentType == "" {
			w.Header()["Content-Type"] = nil
		} else {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// Redirect answers every request with a redirect to location.
func Redirect(code int, location string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(code)
	})
}

// endlessChunk is what Endless and the endless raw server write, again and
// again.
var endlessChunk = []byte(strings.Repeat("mailtls lab endless body ", 1024/25+1)[:1024])

// Endless answers 200 text/plain and streams a body that never ends, until
// the client goes away or the server closes.
func Endless() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := w.Write(endlessChunk); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}

// Drip answers 200 text/plain, sends head at once and then one more byte
// of it every interval, never ending the body: a slow-drip server whose
// body the client's deadline cuts off.
func Drip(head string, interval time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_, _ = io.WriteString(w, head)
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			if err := rc.Flush(); err != nil {
				return
			}
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
			if _, err := w.Write([]byte{head[i%len(head)]}); err != nil {
				return
			}
		}
	})
}

// Slow waits delay, or until the client goes away, before calling h.
func Slow(delay time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}

// RawServer is a hostile plain-TCP server on 127.0.0.1:0: see StartStall
// and StartEndless.
type RawServer struct {
	ln        net.Listener
	handle    func(net.Conn)
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// StartStall starts a server that accepts connections and never sends a
// byte, like a stalled TLS handshake. Connections stay open until Close.
func StartStall() (*RawServer, error) {
	return startRaw(func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // until the client or Close closes it
	})
}

// StartEndless starts a server that accepts connections and writes garbage
// to them until the client goes away.
func StartEndless() (*RawServer, error) {
	return startRaw(func(c net.Conn) {
		for {
			if _, err := c.Write(endlessChunk); err != nil {
				return
			}
		}
	})
}

// StartReply starts a server that reads what the client sends first (a
// TLS ClientHello, say), answers every connection with reply and closes
// it: a TLS alert or a hand-made ServerHello, for example.
func StartReply(reply []byte) (*RawServer, error) {
	return startRaw(func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write(reply)
	})
}

// NewReply is StartReply for tests: it fails t on error and closes the
// server when the test ends.
func NewReply(t testing.TB, reply []byte) *RawServer {
	t.Helper()
	return mustRaw(t, func() (*RawServer, error) { return StartReply(reply) })
}

// NewStall is StartStall for tests: it fails t on error and closes the
// server when the test ends.
func NewStall(t testing.TB) *RawServer {
	t.Helper()
	return mustRaw(t, StartStall)
}

// NewEndless is StartEndless for tests: it fails t on error and closes the
// server when the test ends.
func NewEndless(t testing.TB) *RawServer {
	t.Helper()
	return mustRaw(t, StartEndless)
}

func mustRaw(t testing.TB, start func() (*RawServer, error)) *RawServer {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func startRaw(handle func(net.Conn)) (*RawServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: raw listen: %w", err)
	}
	s := &RawServer{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *RawServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c)
		}()
	}
}

// Addr returns the listener's address, "127.0.0.1:PORT".
func (s *RawServer) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes every connection and waits for the
// server's goroutines.
func (s *RawServer) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}
