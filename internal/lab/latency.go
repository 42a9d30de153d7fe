package lab

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// latencyListener delays every accepted connection: the server's first
// read or write on it waits until the latency has passed since the
// accept, as if the connection had taken that long to arrive. Reads and
// writes of different connections wait independently.
type latencyListener struct {
	net.Listener
	latency atomic.Int64 // nanoseconds
}

func (l *latencyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if d := time.Duration(l.latency.Load()); d > 0 {
		return &delayConn{Conn: c, until: time.Now().Add(d)}, nil
	}
	return c, nil
}

type delayConn struct {
	net.Conn
	once  sync.Once
	until time.Time
}

func (c *delayConn) wait() { c.once.Do(func() { time.Sleep(time.Until(c.until)) }) }

func (c *delayConn) Read(b []byte) (int, error) {
	c.wait()
	return c.Conn.Read(b)
}

func (c *delayConn) Write(b []byte) (int, error) {
	c.wait()
	return c.Conn.Write(b)
}

// SyscallConn gives the socket to code that peeks at it (peerClosed).
func (c *delayConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("lab: not a socket")
}

// SetAcceptLatency makes the server wait d after accepting each new
// connection before it reads or writes on it (0 turns it off): a distant
// server, for benchmarks.
func (s *HTTPS) SetAcceptLatency(d time.Duration) { s.ln.(*latencyListener).latency.Store(int64(d)) }

// SetAcceptLatency makes the server wait d after accepting each new
// connection before its banner (0 turns it off).
func (s *SMTPServer) SetAcceptLatency(d time.Duration) {
	s.ln.(*latencyListener).latency.Store(int64(d))
}
