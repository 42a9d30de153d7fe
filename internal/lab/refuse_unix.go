//go:build unix

package lab

import (
	"fmt"
	"syscall"
)

// reserveClosedPort binds a TCP socket on 127.0.0.1 and never listens on
// it: the port stays the lab's (nothing else can bind it), and the kernel
// answers every connection to it with a reset, "connection refused".
func reserveClosedPort() (port int, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("lab: closed port: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("lab: closed port: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, nil, fmt.Errorf("lab: closed port: %w", err)
	}
	return sa.(*syscall.SockaddrInet4).Port, func() { syscall.Close(fd) }, nil
}
