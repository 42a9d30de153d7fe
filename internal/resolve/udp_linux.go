package resolve

import (
	"errors"
	"net"
	"syscall"
)

// readDatagram reads one datagram whole without holding a 64 KiB buffer
// while it waits: it waits until a datagram is there, peeks at its size
// (MSG_PEEK|MSG_TRUNC gives the real length on Linux) and reads it into a
// buffer of that size. A bulk scan has thousands of lookups waiting at
// once; 64 KiB each would be most of its memory.
func readDatagram(conn net.Conn) ([]byte, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return readMax(conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return readMax(conn)
	}
	size := 1 // an error (ICMP refused, say) is left for Read to report
	var one [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_TRUNC)
		if errors.Is(e, syscall.EAGAIN) || errors.Is(e, syscall.EINTR) {
			return false // nothing yet: wait until readable
		}
		if e == nil && n > 0 {
			size = n
		}
		return true
	})
	if err != nil {
		return nil, err // the deadline, or the connection closed
	}
	buf := make([]byte, size)
	n, err := conn.Read(buf)
	return buf[:n], err
}
