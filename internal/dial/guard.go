package dial

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"code.dny.dev/ssrf"
)

// ErrBlocked is wrapped by every error of a Guard: the scan was not allowed
// to connect there. It is a verdict about the target, not a network failure.
var ErrBlocked = errors.New("dial: target not allowed")

// GuardPorts are the only ports a guarded scan connects to: SMTP (RFC 5321
// §4.5.4.2 via RFC 3207) and HTTPS for the policy (RFC 8461 §3.3).
var GuardPorts = []uint16{25, 443}

// Guard keeps a scan run on behalf of someone else (the web checker) away
// from addresses a public service must not reach: loopback, private,
// link-local, shared (CGNAT), multicast and the other special-purpose
// ranges of the IANA registries (RFC 6890), and every port but 25 and 443.
// The ranges come from code.dny.dev/ssrf, generated from the registries.
//
// The check runs at dial time on the address being connected to, so a DNS
// answer that changes between lookups (rebinding) cannot get around it. A
// Guard is safe for concurrent use.
type Guard struct {
	g     *ssrf.Guardian
	ports []uint16
}

// NewGuard returns a guard that also lets through the prefixes in allow (for
// an internal deployment, and for tests whose lab uses loopback addresses).
func NewGuard(allow ...netip.Prefix) *Guard { return NewGuardPorts(GuardPorts, allow...) }

// WebhookPorts are the only ports webhook deliveries connect to: HTTPS.
var WebhookPorts = []uint16{443}

// NewGuardPorts is NewGuard for other ports than the scanner's (webhook
// deliveries: WebhookPorts).
func NewGuardPorts(ports []uint16, allow ...netip.Prefix) *Guard {
	var v4, v6 []netip.Prefix
	for _, p := range allow {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return &Guard{g: ssrf.New(ssrf.WithPorts(ports...), ssrf.WithAllowedV4Prefixes(v4...), ssrf.WithAllowedV6Prefixes(v6...)), ports: ports}
}

// BlockedError says which target a Guard refused and why.
type BlockedError struct {
	Addr netip.AddrPort
	// Why names the range or the port rule, e.g. "a private-use address
	// (RFC 1918)".
	Why   string
	Ports []uint16 // the ports the guard allows
}

func (e *BlockedError) Error() string {
	if slices.Equal(e.Ports, WebhookPorts) {
		return fmt.Sprintf("not connected to %s: it is %s, and webhooks are delivered only to public addresses on port 443", e.Addr, e.Why)
	}
	return fmt.Sprintf("not connected to %s: it is %s, and this scanner connects only to public addresses on ports 25 and 443", e.Addr, e.Why)
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Check returns a *BlockedError when ap must not be connected to.
func (g *Guard) Check(ap netip.AddrPort) error {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	err := g.g.SafeAddrPort(ap)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ssrf.ErrProhibitedPort):
		return &BlockedError{Addr: ap, Why: fmt.Sprintf("port %d", ap.Port()), Ports: g.ports}
	}
	return &BlockedError{Addr: ap, Why: RangeName(ap.Addr()), Ports: g.ports}
}

// Control is a net.Dialer Control function: the same check on the socket
// address the kernel is about to connect to.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s is not an address and port", ErrBlocked, address)
	}
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", ErrBlocked, network)
	}
	return g.Check(ap)
}

// RangeName says in words which kind of special-purpose address ip is. It
// names the ranges people meet in practice; the rest are "special-purpose".
func RangeName(ip netip.Addr) string {
	ip = ip.Unmap()
	in := func(p string) bool { return netip.MustParsePrefix(p).Contains(ip) }
	switch {
	case ip.IsLoopback():
		return "a loopback address (RFC 1122, RFC 4291)"
	case ip.IsUnspecified() || in("0.0.0.0/8"):
		return "an unspecified (\"this network\") address (RFC 791, RFC 4291)"
	case ip.Is4() && ip.IsPrivate():
		return "a private-use address (RFC 1918)"
	case ip.IsPrivate():
		return "a unique local address (RFC 4193)"
	case in("100.64.0.0/10"):
		return "a shared (carrier-grade NAT) address (RFC 6598)"
	case ip.IsLinkLocalUnicast():
		return "a link-local address (RFC 3927, RFC 4291)"
	case ip.IsMulticast():
		return "a multicast address (RFC 1112, RFC 4291)"
	case in("192.0.2.0/24") || in("198.51.100.0/24") || in("203.0.113.0/24") || in("2001:db8::/32") || in("3fff::/20"):
		return "a documentation address (RFC 5737, RFC 3849, RFC 9637)"
	case in("240.0.0.0/4"):
		return "a reserved address (RFC 1112)"
	}
	return "a special-purpose address (IANA special-purpose address registries, RFC 6890)"
}
