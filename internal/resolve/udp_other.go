//go:build !linux

package resolve

import "net"

// readDatagram reads one datagram whole (see the Linux version).
func readDatagram(conn net.Conn) ([]byte, error) { return readMax(conn) }
