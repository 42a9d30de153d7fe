//go:build !unix

package lab

import (
	"fmt"
	"net"
)

// reserveClosedPort finds a port nothing listens on. Without the unix
// socket calls the port cannot be kept, so another process might take it:
// best effort only.
func reserveClosedPort() (port int, release func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, fmt.Errorf("lab: closed port: %w", err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port, func() {}, nil
}
