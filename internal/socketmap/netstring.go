// Package socketmap implements the Postfix socketmap protocol
// (socketmap_table(5), Sendmail's socket map): a client sends one
// netstring "NAME KEY" per lookup and the server answers each, in order,
// with one netstring "OK data", "NOTFOUND ", "TEMP reason", "TIMEOUT
// reason" or "PERM reason". Requests may be pipelined on one connection.
//
// Netstrings are D. J. Bernstein's "LEN:BYTES," encoding
// (https://cr.yp.to/proto/netstrings.txt): a decimal length without
// leading zeros (a single "0" for the empty string), a colon, the bytes and
// a comma.
package socketmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits of the protocol.
const (
	// MaxReply is the longest reply Postfix accepts (dict_sockmap.c:
	// "Replies must be no longer than 100000 characters").
	MaxReply = 100000
	// DefaultMaxRequest bounds a request payload. Postfix sends "NAME KEY"
	// where KEY is a next-hop domain (at most 253 octets plus brackets and
	// a port); 1024 leaves room for long names and matches the Debian peer.
	DefaultMaxRequest = 1024
)

// Errors of Reader.Next. A malformed or oversized netstring leaves the
// stream unsynchronised: the connection must be closed.
var (
	ErrMalformed = errors.New("socketmap: malformed netstring")
	ErrTooLarge  = errors.New("socketmap: netstring larger than the limit")
)

// Reader reads netstrings from a stream.
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// NewReader reads netstrings of at most max payload bytes from br.
func NewReader(br *bufio.Reader, max int) *Reader {
	return &Reader{br: br, max: max}
}

// Next returns the next netstring's payload; the slice is valid until the
// next call. It returns io.EOF when the stream ends cleanly between
// netstrings, io.ErrUnexpectedEOF when it ends inside one, ErrTooLarge when
// the announced length exceeds the limit (before reading the payload) and
// ErrMalformed for anything else that is not a netstring.
func (r *Reader) Next() ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			if digits == 0 {
				return nil, fmt.Errorf("%w: no length before ':'", ErrMalformed)
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: byte %q in the length", ErrMalformed, c)
		}
		if digits > 0 && n == 0 {
			return nil, fmt.Errorf("%w: leading zero in the length", ErrMalformed)
		}
		n = n*10 + int(c-'0')
		digits++
		if n > r.max {
			return nil, fmt.Errorf("%w: %d+ bytes announced, the limit is %d", ErrTooLarge, n, r.max)
		}
	}
	if cap(r.buf) < n+1 {
		r.buf = make([]byte, n+1)
	}
	buf := r.buf[:n+1]
	if _, err := io.ReadFull(r.br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("%w: %q instead of ',' after %d bytes", ErrMalformed, buf[n], n)
	}
	return buf[:n], nil
}

// AppendNetstring appends payload encoded as a netstring to dst.
func AppendNetstring(dst []byte, payload string) []byte {
	dst = strconv.AppendInt(dst, int64(len(payload)), 10)
	dst = append(dst, ':')
	dst = append(dst, payload...)
	return append(dst, ',')
}
