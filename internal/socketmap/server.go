package socketmap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Server defaults.
const (
	DefaultMaxConns     = 1024
	DefaultIdleTimeout  = 5 * time.Minute // Postfix closes its own idle sockets after 10 s
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("socketmap: server closed")

// Handler answers one request. It is called from the connection's
// goroutine, one request at a time per connection, so the replies of
// pipelined requests go out in order; ctx ends when the server is closed.
type Handler func(ctx context.Context, req Request) Reply

// Events are counted by the server; a nil func is not called.
type Events struct {
	Accepted  func()           // a connection was accepted
	Rejected  func(why string) // a connection was closed at once: "max_conns" or "max_conns_per_ip"
	Malformed func(err error)  // a connection was closed on a bad netstring
	Panic     func(p any)      // a handler panicked (the client got TEMP)
	Served    func(r Reply)    // a reply was queued
	Log       *slog.Logger     // nil: no logging
}

// Server serves the socketmap protocol on any number of listeners. Set
// the fields before Serve; the zero value of each limit is its default.
type Server struct {
	Handler      Handler
	MaxRequest   int           // payload bytes per request; 0: DefaultMaxRequest
	MaxConns     int           // connections at once over all listeners; 0: DefaultMaxConns
	MaxConnsIP   int           // connections at once per client IP (TCP); 0: no limit
	IdleTimeout  time.Duration // waiting for the next request
	ReadTimeout  time.Duration // reading one request once it has started
	WriteTimeout time.Duration // writing replies
	Events       Events

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	closing   atomic.Bool
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	initOnce  sync.Once
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.perIP = map[netip.Addr]int{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then. Temporary accept errors are retried with a short
// back-off.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[&l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !errors.Is(err, net.ErrClosed) && isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.start(c)
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ECONNABORTED).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) start(nc net.Conn) {
	ip := remoteIP(nc)
	s.mu.Lock()
	why := ""
	switch {
	case s.closing.Load():
		why = "closing"
	case len(s.conns) >= orDefault(s.MaxConns, DefaultMaxConns):
		why = "max_conns"
	case s.MaxConnsIP > 0 && ip.IsValid() && s.perIP[ip] >= s.MaxConnsIP:
		why = "max_conns_per_ip"
	}
	if why != "" {
		s.mu.Unlock()
		// Counted before the close, so a client that sees the close also
		// sees the count (metrics scraped right after are exact).
		if f := s.Events.Rejected; f != nil && why != "closing" {
			f(why)
		}
		nc.Close()
		return
	}
	c := &conn{s: s, nc: nc, ip: ip}
	s.conns[c] = struct{}{}
	if ip.IsValid() {
		s.perIP[ip]++
	}
	s.wg.Add(1)
	s.mu.Unlock()
	if f := s.Events.Accepted; f != nil {
		f()
	}
	go c.serve()
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) done(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.ip.IsValid() {
		if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
			delete(s.perIP, c.ip)
		}
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Conns returns the number of open connections.
func (s *Server) Conns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, lets every connection finish the request it
// is serving and closes it, and waits for them until ctx ends; then it
// closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		(*l).Close()
	}
	for c := range s.conns {
		c.wake() // an idle connection stops waiting for its next request
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-finished
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.init()
	s.closing.Store(true)
	s.cancel()
	s.mu.Lock()
	for l := range s.listeners {
		(*l).Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn
	ip netip.Addr

	mu   sync.Mutex
	idle bool // waiting for the next request
}

// wake ends the wait for the next request (Shutdown).
func (c *conn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// startIdle starts the wait for the next request with its deadline, unless
// the server is shutting down. The deadline is set under the lock so that a
// concurrent wake cannot be overwritten.
func (c *conn) startIdle(timeout time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s.closing.Load() {
		return false
	}
	c.idle = true
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return true
}

func (c *conn) endIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = false
	return !c.s.closing.Load()
}

// serve reads requests and writes replies in order. Replies are buffered
// and flushed when no further request is already waiting, so a pipelining
// client gets one write per batch.
func (c *conn) serve() {
	s := c.s
	defer s.done(c)
	defer c.nc.Close()
	br := bufio.NewReaderSize(c.nc, 4096)
	bw := bufio.NewWriterSize(c.nc, 4096)
	r := NewReader(br, orDefault(s.MaxRequest, DefaultMaxRequest))
	idleTimeout := orDefault(s.IdleTimeout, DefaultIdleTimeout)
	readTimeout := orDefault(s.ReadTimeout, DefaultReadTimeout)
	writeTimeout := orDefault(s.WriteTimeout, DefaultWriteTimeout)
	var (
		out        []byte
		readUntil  time.Time // the read deadline in force
		writeUntil time.Time
	)
	flush := func() bool {
		if len(out) == 0 {
			return true
		}
		now := time.Now()
		if writeUntil.Sub(now) < writeTimeout/2 {
			writeUntil = now.Add(writeTimeout)
			c.nc.SetWriteDeadline(writeUntil)
		}
		_, err := bw.Write(out)
		out = out[:0]
		if err == nil {
			err = bw.Flush()
		}
		return err == nil
	}
	for {
		if br.Buffered() == 0 {
			if !flush() {
				return
			}
			if !c.startIdle(idleTimeout) {
				return // shutting down between requests
			}
			_, err := br.Peek(1)
			if !c.endIdle() || err != nil {
				return // idle timeout, client gone or shutdown
			}
			readUntil = time.Now().Add(readTimeout)
			c.nc.SetReadDeadline(readUntil)
		} else if now := time.Now(); readUntil.Sub(now) < readTimeout/2 {
			readUntil = now.Add(readTimeout)
			c.nc.SetReadDeadline(readUntil)
		}
		payload, err := r.Next()
		if err != nil {
			if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
				if f := s.Events.Malformed; f != nil {
					f(err)
				}
				if l := s.Events.Log; l != nil {
					l.Debug("socketmap: closing the connection", "remote", c.nc.RemoteAddr().String(), "error", err)
				}
				flush() // the replies already computed still go out
			}
			if err == io.EOF {
				flush()
			}
			return
		}
		reply := c.handle(ParseRequest(payload))
		out = reply.Append(out)
		if f := s.Events.Served; f != nil {
			f(reply)
		}
		if len(out) >= 32<<10 && !flush() {
			return
		}
		if s.closing.Load() && br.Buffered() == 0 {
			flush()
			return
		}
	}
}

// handle calls the handler; a panic becomes a TEMP reply, so that Postfix
// defers rather than acts on a guess.
func (c *conn) handle(req Request) (reply Reply) {
	defer func() {
		if p := recover(); p != nil {
			if f := c.s.Events.Panic; f != nil {
				f(p)
			}
			if l := c.s.Events.Log; l != nil {
				l.Error("socketmap: handler panic", "key", req.Key, "panic", p)
			}
			reply = Reply{Status: Temp, Data: "internal error"}
		}
	}()
	return c.s.Handler(c.s.ctx, req)
}
