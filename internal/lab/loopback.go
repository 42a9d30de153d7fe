package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

// loopbackAttempts bounds the addresses FreeLoopback tries.
const loopbackAttempts = 20

// RandomLoopback returns a random address in 127.64.0.0 to 127.254.255.254:
// clear of 127.0.0.0/16, where real services listen (127.0.0.1, a stub
// resolver on 127.0.0.53) and NextAddr hands out its fake addresses.
func RandomLoopback() netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(64 + rand.N(191)), byte(rand.N(256)), byte(1 + rand.N(254))})
}

// FreeLoopback calls start with random loopback addresses until it
// succeeds or fails for another reason than an address in use
// (EADDRINUSE), and returns the address it succeeded with. It is for
// servers that must listen on a fixed port (53, 443, 25) because their
// client cannot be given a port or a dial rule: a program that reads its
// DNS server from resolv.conf, an MTA that connects to port 25. Each run
// of a test picks its own address, so concurrent runs never collide, and
// the other ports of the address are the test's too: another run that
// draws the same address fails on its first port and draws again. Ports
// below 1024 need root (or CAP_NET_BIND_SERVICE).
func FreeLoopback(start func(ip netip.Addr) error) (netip.Addr, error) {
	var err error
	for range loopbackAttempts {
		ip := RandomLoopback()
		if err = start(ip); err == nil {
			return ip, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, fmt.Errorf("lab: no free loopback address in %d attempts: %w", loopbackAttempts, err)
}

// FreeLoopbackPorts returns a random loopback address on which every one
// of ports can be listened on now (each is tried and closed again), for a
// server the test starts later on those fixed ports of one address (an
// ACME client's HTTP-01 and TLS-ALPN-01 listeners).
func FreeLoopbackPorts(ports ...int) (netip.Addr, error) {
	return FreeLoopback(func(ip netip.Addr) error {
		for _, p := range ports {
			ln, err := net.Listen("tcp", AddrPort(ip, p))
			if err != nil {
				return err
			}
			ln.Close()
		}
		return nil
	})
}

// AddrPort joins ip and port as "ip:port".
func AddrPort(ip netip.Addr, port int) string {
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

// StartDNSWellKnown starts a DNS server on port 53 (UDP and TCP) of a
// random free loopback address (FreeLoopback), for clients that read their
// DNS server from resolv.conf. Call Close to stop it.
func StartDNSWellKnown() (*DNS, error) {
	var d *DNS
	_, err := FreeLoopback(func(ip netip.Addr) error {
		var err error
		d, err = StartDNSAt(AddrPort(ip, 53))
		return err
	})
	return d, err
}

// NewDNSWellKnown is StartDNSWellKnown for tests: it fails t on error and
// closes the server when the test ends.
func NewDNSWellKnown(t testing.TB) *DNS {
	t.Helper()
	d, err := StartDNSWellKnown()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// StartWellKnown starts a lab whose DNS server listens on port 53 and
// whose HTTPS server listens on port 443 of one random free loopback
// address (FreeLoopback), for clients that can be given neither ports nor
// dial rules (StartAt). Call Close to stop it.
func StartWellKnown() (*Lab, error) {
	var l *Lab
	_, err := FreeLoopback(func(ip netip.Addr) error {
		var err error
		l, err = StartAt(AddrPort(ip, 53), AddrPort(ip, 443))
		return err
	})
	return l, err
}

// NewWellKnown is StartWellKnown for tests, with New's checks at the end.
func NewWellKnown(t testing.TB) *Lab {
	t.Helper()
	l, err := StartWellKnown()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		if n := l.DNS.Panics(); n > 0 {
			t.Errorf("lab: dns handler panicked %d times", n)
		}
	})
	return l
}

// IP returns the address the DNS server listens on.
func (d *DNS) IP() netip.Addr {
	ap, err := netip.ParseAddrPort(d.Addr())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}
