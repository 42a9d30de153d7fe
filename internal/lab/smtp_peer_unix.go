//go:build unix

package lab

import (
	"net"
	"syscall"
)

// peerClosed reports whether the client of c has certainly closed the
// connection: a peek at the socket, without taking data from the session
// reading it, finds end of file or a reset. Pending data makes it report
// false.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	// Go's sockets are non-blocking, so this does not wait.
	_ = raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		closed = (n == 0 && err == nil) || err == syscall.ECONNRESET
	})
	return closed
}
