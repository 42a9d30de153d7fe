// Package dial decides where a connection really goes. It implements the
// curl-style --connect-to rules that let a scan reach a server before DNS
// points at it (and let tests reach loopback servers) while the scan keeps the
// original host name for SNI and certificate checks.
package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one connect-to rule, "HOST:PORT:ADDR:PORT" as in curl's
// --connect-to. HOST may be a host name or an IP address (an IPv6 address in
// brackets); an empty HOST or PORT matches any. An empty ADDR keeps the
// original address and an empty second PORT keeps the original port.
type Rule struct {
	Host   string // lower-case, no trailing dot; "" matches any host
	Port   int    // 0 matches any port
	ToHost string // "" keeps the original address
	ToPort int    // 0 keeps the original port
}

// RuleError is a connect-to rule ParseRule refuses; Reason says why in
// words a command can print after the flag's name.
type RuleError struct {
	Rule   string
	Reason string
}

func (e *RuleError) Error() string { return fmt.Sprintf("dial: connect-to %q: %s", e.Rule, e.Reason) }

// ParseRule parses "HOST:PORT:ADDR:PORT"; a bad rule is a *RuleError.
func ParseRule(s string) (Rule, error) {
	bad := func(format string, args ...any) error {
		return &RuleError{Rule: s, Reason: fmt.Sprintf(format, args...)}
	}
	var parts []string
	rest := s
	for i := 0; i < 4; i++ {
		if i == 3 {
			parts = append(parts, rest)
			break
		}
		if strings.HasPrefix(rest, "[") {
			end := strings.Index(rest, "]")
			if end < 0 {
				return Rule{}, bad("unclosed '['")
			}
			if a, err := netip.ParseAddr(rest[1:end]); err != nil || !a.Is6() {
				return Rule{}, bad("only an IPv6 address goes in brackets")
			}
			parts = append(parts, rest[1:end])
			rest = rest[end+1:]
			if !strings.HasPrefix(rest, ":") {
				return Rule{}, bad("want HOST:PORT:ADDR:PORT")
			}
			rest = rest[1:]
			continue
		}
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return Rule{}, bad("want HOST:PORT:ADDR:PORT")
		}
		parts = append(parts, rest[:j])
		rest = rest[j+1:]
	}
	if strings.HasPrefix(parts[3], "[") || strings.Contains(parts[3], ":") {
		return Rule{}, bad("want HOST:PORT:ADDR:PORT (put IPv6 addresses in brackets)")
	}
	var r Rule
	var err error
	r.Host = strings.TrimSuffix(strings.ToLower(parts[0]), ".")
	if r.Port, err = parsePort(parts[1]); err != nil {
		return Rule{}, bad("%v", err)
	}
	r.ToHost = parts[2]
	for _, h := range []string{r.Host, strings.TrimSuffix(r.ToHost, ".")} {
		if !validHost(h) {
			return Rule{}, bad("%q is neither a host name nor an IP address", h)
		}
	}
	if r.ToPort, err = parsePort(parts[3]); err != nil {
		return Rule{}, bad("%v", err)
	}
	if r.ToHost == "" && r.ToPort == 0 {
		return Rule{}, bad("rule changes nothing")
	}
	return r, nil
}

// validHost reports whether h is empty, an IP address, or labels made of
// the characters of host names.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil || h == "" {
		return true
	}
	if strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}

// String returns the rule in the form ParseRule accepts.
func (r Rule) String() string {
	port := func(p int) string {
		if p == 0 {
			return ""
		}
		return strconv.Itoa(p)
	}
	host := func(h string) string {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host(r.Host) + ":" + port(r.Port) + ":" + host(r.ToHost) + ":" + port(r.ToPort)
}

// matchesName reports whether the rule's HOST is the host name given,
// which the caller has lower-cased and stripped of its trailing dot.
func (r Rule) matchesName(host string, port int) bool {
	if r.Port != 0 && r.Port != port {
		return false
	}
	if r.Host == "" {
		return true
	}
	if r.Host != host {
		return false // compared first: a dial may check thousands of rules
	}
	_, err := netip.ParseAddr(r.Host)
	return err != nil // a rule naming an IP address matches no host name
}

// matchesAddr reports whether the rule's HOST is the IP address given,
// whose unmapped text form the caller passes as ipText.
func (r Rule) matchesAddr(ip netip.Addr, ipText string, port int) bool {
	if r.Port != 0 && r.Port != port || !ip.IsValid() {
		return false
	}
	if r.Host == ipText {
		return true
	}
	if !strings.Contains(r.Host, ":") {
		// IPv4 text has one form (netip refuses leading zeros), so a
		// different string is a different address or a name.
		return false
	}
	a, err := netip.ParseAddr(r.Host)
	return err == nil && a.Unmap() == ip.Unmap()
}

func (r Rule) apply(host string, port int) string {
	if r.ToHost != "" {
		host = r.ToHost
	}
	if r.ToPort != 0 {
		port = r.ToPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// NetDial is the signature of net.Dialer.DialContext.
type NetDial func(ctx context.Context, network, address string) (net.Conn, error)

// Dialer applies connect-to rules before dialling. The zero value dials
// directly with a net.Dialer.
type Dialer struct {
	Rules []Rule
	// Net dials the final address; nil means (&net.Dialer{}).DialContext,
	// with Guard.Control as its Control function when Guard is set.
	Net NetDial
	// Guard, if set, is asked about every address before it is dialled
	// (before the rules, which a guarded scan does not take from its
	// users); a refused dial returns its *BlockedError.
	Guard *Guard
}

// HostOverride reports whether a rule naming host (or matching any host)
// redirects every connection to host:port, and where to. A scan that would
// otherwise connect to each address of host connects once, to this address.
func (d *Dialer) HostOverride(host string, port int) (string, bool) {
	if d == nil {
		return "", false
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range d.Rules {
		if r.matchesName(name, port) {
			return r.apply(host, port), true
		}
	}
	return "", false
}

// Target returns the address to dial to reach host at ip:port. Rules naming
// the host win over rules naming the address; without a matching rule the
// result is ip:port.
func (d *Dialer) Target(host string, ip netip.Addr, port int) string {
	if to, ok := d.HostOverride(host, port); ok {
		return to
	}
	if d != nil {
		ipText := ip.Unmap().String()
		for _, r := range d.Rules {
			if r.matchesAddr(ip, ipText, port) {
				return r.apply(ip.String(), port)
			}
		}
	}
	if !ip.IsValid() {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

// ErrNoAddress is returned by Dial when neither a rule nor an address says
// where to connect.
var ErrNoAddress = errors.New("dial: no address to connect to")

// Dial connects to host at ip:port over TCP, after applying the rules. ip may
// be the zero Addr when a host rule is known to match.
func (d *Dialer) Dial(ctx context.Context, host string, ip netip.Addr, port int) (net.Conn, error) {
	if !ip.IsValid() {
		if _, ok := d.HostOverride(host, port); !ok {
			return nil, ErrNoAddress
		}
	}
	if d != nil && d.Guard != nil {
		if !ip.IsValid() {
			return nil, fmt.Errorf("%w: %s has no address of its own to check", ErrBlocked, host)
		}
		if err := d.Guard.Check(netip.AddrPortFrom(ip, uint16(port))); err != nil {
			return nil, err
		}
	}
	addr := d.Target(host, ip, port)
	netDial := (&net.Dialer{}).DialContext
	switch {
	case d != nil && d.Net != nil:
		netDial = d.Net
	case d != nil && d.Guard != nil:
		netDial = (&net.Dialer{Control: d.Guard.Control}).DialContext
	}
	return netDial(ctx, "tcp", addr)
}
