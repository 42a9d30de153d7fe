package socketmap

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Client is a socketmap client on one connection, for `mailtls resolve
// --server`, tests and benchmarks. It is not safe for concurrent use.
type Client struct {
	conn net.Conn
	r    *Reader
	buf  []byte
}

// Dial connects to addr: "host:port", "inet:host:port" or "unix:/path".
func Dial(ctx context.Context, addr string) (*Client, error) {
	network, address := "tcp", strings.TrimPrefix(addr, "inet:")
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return NewClient(c), nil
}

// NewClient speaks the protocol on c.
func NewClient(c net.Conn) *Client {
	return &Client{conn: c, r: NewReader(bufio.NewReader(c), MaxReply)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Send writes one request without waiting for its reply (pipelining).
func (c *Client) Send(req Request) error {
	c.buf = AppendNetstring(c.buf[:0], req.Name+" "+req.Key)
	_, err := c.conn.Write(c.buf)
	return err
}

// Receive reads the next reply.
func (c *Client) Receive() (Reply, error) {
	p, err := c.r.Next()
	if err != nil {
		return Reply{}, err
	}
	return ParseReply(string(p)), nil
}

// Query sends one request and waits for its reply until ctx ends.
func (c *Client) Query(ctx context.Context, name, key string) (Reply, error) {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.Send(Request{Name: name, Key: key}); err != nil {
		return Reply{}, fmt.Errorf("socketmap: sending: %w", err)
	}
	rep, err := c.Receive()
	if err != nil {
		return Reply{}, fmt.Errorf("socketmap: reading the reply: %w", err)
	}
	return rep, nil
}
